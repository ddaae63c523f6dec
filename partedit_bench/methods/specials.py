"""Special checkpoints: the instruction-tuned (`ip2p`), inpainting (`inpaint`) and Kontext
(`kontext`) models a method loads beside the run's backbone, when its first job starts; shared
by the methods that hold the same one, freed when the last releases it. Methods that edit with
one subclass `SpecialCheckpointMethod`."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch

from partedit_bench.api import EditMethod, MethodUnavailable
from partedit_bench.engine.backbones import Backbone, load_backbone
from partedit_bench.engine.registry import BACKBONES, SPECIAL_CHECKPOINTS
from partedit_bench.errors import UserError


def special_name(backbone: Backbone, kind: str) -> str:
    """The name of the special checkpoint (`ip2p`, `inpaint`) that goes with a run's backbone,
    without loading it.

    Raises:
        MethodUnavailable: no such checkpoint for this backbone.
    """
    table = SPECIAL_CHECKPOINTS.get(kind, {})
    own = Path(backbone.name).name
    if own in BACKBONES and BACKBONES[own].folder is not None and own not in table:
        # a model trained here: the family's public checkpoint belongs to other weights
        raise MethodUnavailable(f"no {kind} checkpoint was trained for {own}")
    name = table.get(own) or table.get(backbone.family)
    if name is None:
        raise MethodUnavailable(f"no {kind} checkpoint for {backbone.family} backbones")
    return name


#: Loaded special checkpoints, while some method holds them: two variants of one method (or
#: two methods on one checkpoint) share a copy; the last release frees it.
_SPECIALS: weakref.WeakValueDictionary[tuple[str, str, str], Backbone] = (
    weakref.WeakValueDictionary()
)


def loaded_specials() -> list[Backbone]:
    """The special checkpoints some method holds now."""
    return list(_SPECIALS.values())


def load_special(backbone: Backbone, kind: str) -> Backbone:
    """The special checkpoint (`ip2p`, `inpaint`) that goes with a run's backbone, on its device
    and dtype (the copy another holder has loaded, if any).

    Raises:
        MethodUnavailable: no such checkpoint for this backbone, or its weights are missing.
    """
    name = special_name(backbone, kind)
    dtype = {
        torch.float16: "float16",
        torch.bfloat16: "bfloat16",
        torch.float64: "float64",
    }.get(backbone.dtype, "float32")
    key = (name, str(backbone.device), dtype)
    loaded = _SPECIALS.get(key)
    if loaded is not None:
        return loaded
    try:
        loaded = load_backbone(name, backbone.device, dtype)
    except UserError as exc:
        raise MethodUnavailable(str(exc)) from exc
    _SPECIALS[key] = loaded
    return loaded


class SpecialCheckpointMethod(EditMethod):
    """A method that edits with its `special_checkpoint` (an instruction-tuned or inpainting
    model mapped from the run's backbone) instead of the backbone itself: the checkpoint loads
    when the method's first job needs it (`checkpoint()`), is released after its last, and its
    name and weights are part of every job's hash. Subclasses implement `open` (the pipeline
    for the loaded checkpoint, or MethodUnavailable when it does not fit)."""

    special: Any = None
    pipe: Any = None

    def preflight(self, backbone: Any, samples: list[Any]) -> None:
        self.backbone, self.special, self.pipe = backbone, None, None
        if not self.is_own_checkpoint(backbone):
            special_name(backbone, str(self.special_checkpoint))  # MethodUnavailable: none

    def is_own_checkpoint(self, backbone: Any) -> bool:
        """Whether the run's backbone is itself the checkpoint (e.g. `flux-kontext`)."""
        return False

    def open(self, special: Any) -> Any:
        """The pipeline this method edits with, on the loaded checkpoint."""
        raise NotImplementedError

    def checkpoint(self) -> Any:
        """The loaded checkpoint (loading it, and its pipeline, on first use)."""
        if self.pipe is None:
            special = self.backbone
            if not self.is_own_checkpoint(special):
                special = load_special(special, str(self.special_checkpoint))  # or Unavailable
            self.pipe, self.special = self.open(special), special
        return self.special

    def release(self) -> None:
        self.special = self.pipe = None

    def inputs_fingerprint(self, sample: Any) -> dict[str, Any]:
        special = self.checkpoint()
        return {"checkpoint": special.name, "weights": special.fingerprint}
