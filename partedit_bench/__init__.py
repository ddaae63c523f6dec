"""partedit-bench: a benchmark and evaluation suite for part-level image editing."""

__version__ = "0.1.0"
