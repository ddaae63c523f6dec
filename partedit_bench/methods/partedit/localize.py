"""PartEdit's token mask on its own, for other consumers: the mask-based baselines' option
`mask_source=tokens` and `partedit-bench localize`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from partedit_bench.methods.partedit.options import PartEditOptions


def default_options(backbone_name: str) -> PartEditOptions:
    """PartEdit's options as the default run uses them on this backbone: the backbone folder's
    `default_methods.yaml` (partworld-sd: 25 steps, EF-DDPM inversion at guidance 3.5) over the
    method's own defaults."""
    import yaml

    from partedit_bench.engine.registry import default_methods_file

    path = default_methods_file(backbone_name)
    options = (yaml.safe_load(path.read_text()) or {}).get("options") or {} if path else {}
    return PartEditOptions(**(options.get("partedit") or {}))


def token_mask(request: Any, options: PartEditOptions | None = None) -> np.ndarray:
    """PartEdit's thresholded token mask of the request's sample: the mean blend mask of a
    PartEdit edit of the same image, seed and mode (options: `default_options`), quantized to
    8 bits as the runner stores it and binarized at 0.5 as `mask_iou` reads it, so that it is
    the mask a partedit job of that sample and seed reports."""
    from partedit_bench.api import mask_image
    from partedit_bench.methods.partedit.method import PartEdit

    chosen = dataclasses.replace(options or default_options(request.backbone.name))
    chosen.mask_source = "tokens"
    method = PartEdit(chosen)
    method.preflight(request.backbone, [request.sample])
    result = method.edit(dataclasses.replace(request, mask=None, options=chosen))
    if result.predicted_mask is None:
        return np.zeros((request.image.size[1], request.image.size[0]), bool)
    stored = np.asarray(mask_image(result.predicted_mask, request.image.size), np.float64)
    return stored / 255.0 >= 0.5


class GivenMask:
    """The option `mask_source` of the methods that edit inside a mask (blended_latent,
    sdxl_inpaint): `gt` (their default, as in the paper), `tokens` (PartEdit's token mask,
    `token_mask`), a segmenter or a folder. The adapter sets `mask_source` in its options and
    calls `given_mask(request)`; the job records the source in its extras."""

    options: Any

    def needs_gt_mask(self) -> bool:
        return str(self.options.mask_source) == "gt"

    def mask_input(self) -> Any:
        """The source, made once, its models on the run's device (the backbone's)."""
        from partedit_bench.engine.mask_sources import MaskInput

        if getattr(self, "_mask_input", None) is None:
            backbone = getattr(self, "backbone", None)
            device = str(backbone.device) if backbone is not None else "cpu"
            self._mask_input = MaskInput(str(self.options.mask_source), device, token_mask)
        return self._mask_input

    def given_mask(self, request: Any) -> np.ndarray:
        return self.mask_input()(request)

    def inputs_fingerprint(self, sample: Any) -> dict[str, Any]:
        own = super().inputs_fingerprint(sample)  # type: ignore[misc]
        if str(self.options.mask_source) == "gt":
            return own
        extra = self.mask_input().fingerprint(sample)
        if self.options.mask_source == "tokens":  # the token files the mask comes from
            from partedit_bench.api import file_digest
            from partedit_bench.methods.partedit.options import parts_of
            from partedit_bench.tokens import token_path

            backbone = getattr(self, "backbone", None)
            if backbone is not None:
                for part in parts_of(sample):
                    path = token_path(backbone.name, part)
                    extra[part] = file_digest(path) if path.is_file() else "missing"
        return {**own, **extra}


class TokenSource:
    """PartEdit's token mask as a mask source (`partedit-bench localize --sources tokens`):
    `token_mask` at the given seed and mode, with `default_options` updated by `options`. Its
    identity (for the mask cache) holds the backbone's weights, the options, the seed and the
    digests of the backbone's token files."""

    def __init__(
        self, backbone: Any, seed: int, synthetic: bool, options: dict[str, Any] | None = None
    ):
        self.backbone, self.seed, self.synthetic = backbone, seed, synthetic
        self.options = dataclasses.replace(default_options(backbone.name), **(options or {}))
        self.options.mask_source = "tokens"
        self.random_weights = bool(backbone.random_weights)

    @property
    def identity(self) -> dict[str, Any]:
        from partedit_bench.api import file_digest
        from partedit_bench.tokens import token_path

        folder = token_path(self.backbone.name, "x").parent
        tokens = (
            {p.stem: file_digest(p) for p in sorted(folder.glob("*.safetensors"))}
            if folder.is_dir()
            else {}
        )
        return {
            "source": "tokens",
            "backbone": self.backbone.name,
            "fingerprint": self.backbone.fingerprint,
            "seed": self.seed,
            "synthetic": self.synthetic,
            "options": dataclasses.asdict(self.options),
            "tokens": tokens,
        }

    def __call__(self, sample: Any, image: Any) -> np.ndarray:
        from partedit_bench.api import EditRequest

        request = EditRequest(
            sample, image, self.seed, self.options, self.backbone, None, self.synthetic
        )
        return token_mask(request, self.options)
