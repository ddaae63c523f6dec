"""partedit-bench: a benchmark and evaluation suite for part-level image editing.

`from partedit_bench import load_backbone, edit` gives the one-image API (partedit_bench.editing);
the names are resolved on first use, so that `import partedit_bench` stays light and the
package's root depends on none of its modules.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: exported name -> the module that defines it
_EXPORTS = {
    "edit": "partedit_bench.editing",
    "load_backbone": "partedit_bench.engine.backbones",
    "run_benchmark": "partedit_bench.benchmark",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'partedit_bench' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
