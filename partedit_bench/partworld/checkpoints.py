"""Training checkpoints (safetensors + JSON state, never pickle), RNG state, progress bars and the
training log of the PartWorld trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes

# ---------------------------------------------------------------------------------------
# Checkpoints (torch.save of tensors and plain containers; loaded with weights_only=True)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _rng_state(gen: torch.Generator, np_rng: np.random.Generator) -> dict[str, Any]:
    return {"torch": gen.get_state(), "numpy": json.dumps(np_rng.bit_generator.state)}


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, np_rng: np.random.Generator):
    gen.set_state(state["torch"])
    np_rng.bit_generator.state = json.loads(state["numpy"])


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True)


def _log(folder: Path, row: dict[str, Any]) -> None:
    with open(folder / "log.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def save_module(module: torch.nn.Module, path: Path) -> None:
    """A module's state dict as safetensors, written atomically."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, tmp)
    os.replace(tmp, path)


def load_module(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(path))
    module.eval()


def trained_state(components: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The trained parameters, `unet.*` and `text_encoder.*` (the EMA covers these)."""
    state = {}
    for prefix in ("unet", "text_encoder"):
        for name, p in components[prefix].named_parameters():
            state[f"{prefix}.{name}"] = p
    return state


def load_ema(components: dict[str, Any], path: Path) -> None:
    """Copies EMA weights (a final safetensors file, or a running checkpoint's) into the
    trained modules."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        ema = load_file(path)
    else:
        state = _load_checkpoint(path)
        if state is None:
            raise UserError(f"no checkpoint at {path}")
        ema = state["ema"]
    with torch.no_grad():
        for k, p in trained_state(components).items():
            p.copy_(ema[k])
