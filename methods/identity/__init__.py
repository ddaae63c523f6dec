"""`identity`: returns the sample's image unchanged (the metric sanity reference)."""

from __future__ import annotations

from methods.identity.method import Identity

__all__ = ["Identity"]

METHOD = Identity  # what `methods.registry()` finds by the folder's name
