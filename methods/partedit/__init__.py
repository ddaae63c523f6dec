"""`partedit`: PartEdit (Cvejic et al., SIGGRAPH 2025), see README.md."""

from methods.partedit.method import PartEdit, PartEditOptions

__all__ = ["PartEdit", "PartEditOptions"]
