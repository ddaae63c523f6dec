"""`partedit`: PartEdit (Cvejic et al., SIGGRAPH 2025), see README.md."""

from partedit_bench.methods.partedit.method import PartEdit, PartEditOptions

__all__ = ["PartEdit", "PartEditOptions"]

METHOD = PartEdit  # what `api.registry()` finds by the folder's name
