"""`identity`: returns the sample's image unchanged (the metric sanity reference)."""

from __future__ import annotations

from partedit_bench.methods.identity.method import Identity

__all__ = ["Identity"]

METHOD = Identity  # what `api.registry()` finds by the folder's name
