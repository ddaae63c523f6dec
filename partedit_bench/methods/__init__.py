"""Editing method adapters, one self-contained folder each (`partedit_bench/methods/<name>/`,
with its README.md). `partedit_bench.api` indexes them (`registry()`) and imports a method only
when a run asks for it; `specials.py` holds the base class of the methods that load a special
checkpoint."""
