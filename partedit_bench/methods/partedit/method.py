"""The `partedit` method adapter (PartEdit, SIGGRAPH 2025): options in `options`, one edit in
`sampling`, the attention processors and masks in `core`."""

from __future__ import annotations

from typing import Any

from partedit_bench.api import EditMethod, EditRequest, EditResult
from partedit_bench.data.schema import Sample
from partedit_bench.engine.mask_sources import MaskInput
from partedit_bench.errors import UserError
from partedit_bench.methods.partedit.options import PartEditOptions, parts_of
from partedit_bench.methods.partedit.sampling import run_partedit

__all__ = ["PartEdit", "PartEditOptions"]


class PartEdit(EditMethod):
    """PartEdit: part tokens localize the edit; attention features are blended per step."""

    name = "partedit"
    version = "2"  # #13: the released pipeline's mask, timing and word swap
    needs = frozenset({"source_prompt", "target_prompt", "part_token"})
    Options = PartEditOptions
    step_options = ("t_e",)
    smoke_options = {"steps": 3, "t_e": 3}

    def load(self, backbone: Any) -> None:
        self.backbone = backbone
        self.tokens: dict[str, Any] = {}
        self.token_digests: dict[str, str] = {}  # the token files, for the job hash

    def needs_gt_mask(self) -> bool:
        return self.options.mask_source == "gt"

    def preflight(self, backbone: Any, samples: list[Sample]) -> None:
        """Stops the run before any job when a needed token is missing or foreign (tokens
        are needed only when they make the mask)."""
        from partedit_bench.api import file_digest
        from partedit_bench.tokens import load_token

        self.load(backbone)
        if self.options.mask_source != "tokens":
            self.masks = MaskInput(self.options.mask_source, backbone.device)
            return
        missing = []
        for part in sorted({p for s in samples for p in parts_of(s)}):
            path = self._token_path(part)
            if not path.is_file():
                missing.append(part)
            else:
                self.tokens[part] = load_token(path, backbone)
                self.token_digests[part] = file_digest(path)
        if missing:
            raise UserError(
                f"partedit needs tokens for ({backbone.name}: {', '.join(missing)}); "
                f"train them with `partedit-bench train-token --backbone "
                f"{backbone.name} --part {','.join(missing)}`, or bring released ones with "
                f"`partedit-bench import-token FILE --backbone {backbone.name} --part PART`"
            )

    def inputs_fingerprint(self, sample: Sample) -> dict[str, Any]:
        """The part token files the sample uses, or what made its given mask (a replaced
        token, mask file or segmentation checkpoint recomputes its jobs)."""
        if self.options.mask_source != "tokens":
            return self.masks.fingerprint(sample)
        return {part: self.token_digests[part] for part in sorted(parts_of(sample))}

    def _token_path(self, part: str) -> Any:
        from pathlib import Path

        from partedit_bench.tokens import token_path

        if self.options.tokens:
            return Path(self.options.tokens) / f"{part}.safetensors"
        return token_path(self.backbone.name, part)

    def edit(self, request: EditRequest) -> EditResult:
        given = self.options.mask_source != "tokens"
        if not hasattr(self, "tokens") or (
            not given and any(p not in self.tokens for p in parts_of(request.sample))
        ):
            self.preflight(request.backbone, [request.sample])
        return run_partedit(
            self.backbone,
            request.sample,
            request.image,
            request.seed,
            self.options,
            self.tokens,
            request.synthetic,
            given_mask=self.masks(request) if given else None,
        ).result
