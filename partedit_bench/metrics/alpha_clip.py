"""Alpha-CLIP on open_clip (Sun et al., CVPR 2024; SunzeY/AlphaCLIP).

Alpha-CLIP is OpenAI CLIP whose vision tower gains `conv1_alpha` (a patch-embedding of the
alpha mask, added to `conv1`'s output) and is fine-tuned whole; its checkpoints hold the vision
tower only, so the OpenAI CLIP weights of the same architecture supply the text tower.
The alpha branch is attached with a forward hook on `visual.conv1` (no patched forward).

Preprocessing: the image is resized to the tower's input size with bicubic interpolation and
normalized with CLIP's mean/std; the alpha mask is resized identically (bilinear) and
normalized with Normalize(0.5, 0.26). No center crop, so image and mask stay aligned for any
aspect ratio. Checkpoints are read without executing code (safetensors, or torch.load with
weights_only=True).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from partedit_bench.errors import UserError

ENV_ALPHA_CLIP = "PARTEDIT_BENCH_ALPHA_CLIP"
ENV_CLIP = "PARTEDIT_BENCH_CLIP"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ALPHA_MEAN, ALPHA_STD = 0.5, 0.26


@dataclass(frozen=True)
class AlphaClipVariant:
    name: str
    open_clip_name: str
    checkpoint: str  # the official file name (grit-1m, full fine-tune)


VARIANTS = {
    v.name: v
    for v in (
        AlphaClipVariant(
            "ViT-L/14@336", "ViT-L-14-336-quickgelu", "clip_l14_336_grit1m_fultune_8xe.pth"
        ),
        AlphaClipVariant("ViT-L/14", "ViT-L-14-quickgelu", "clip_l14_grit1m_fultune_8xe.pth"),
        AlphaClipVariant("ViT-B/16", "ViT-B-16-quickgelu", "clip_b16_grit1m_fultune_8xe.pth"),
    )
}
DEFAULT_VARIANT = "ViT-L/14@336"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a checkpoint without executing code: safetensors, or a pickled state dict via
    torch.load(weights_only=True). A TorchScript archive (OpenAI's original .pt) is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"cannot read {path} as a weights-only state dict ({type(exc).__name__}); "
            "TorchScript archives are not loaded: use the safetensors / open_clip "
            "state-dict release of the same weights"
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return data


def official_to_open_clip_visual(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps an official Alpha-CLIP vision state dict onto open_clip's VisionTransformer names:
    drops a `visual.` prefix and renames `attn.in_proj.weight/bias` to
    `attn.in_proj_weight/bias`."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("visual.")
        key = key.replace("attn.in_proj.weight", "attn.in_proj_weight")
        key = key.replace("attn.in_proj.bias", "attn.in_proj_bias")
        out[key] = value
    return out


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's size and first and last MiB (fast on GB checkpoints)."""
    path = Path(path)
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(fh.read())
    return h.hexdigest()[:16]


class AlphaCLIP:
    """An open_clip CLIP model whose vision tower takes an alpha mask.

    Args:
        model: an open_clip `CLIP` (QuickGELU); `conv1_alpha` is added to `model.visual`
            (zero-initialized) unless present.
        tokenizer: open_clip tokenizer for the text tower.
        image_size (int): the vision tower's input size.
    """

    def __init__(self, model: Any, tokenizer: Any, image_size: int, device: str = "cpu"):
        visual = model.visual
        if not hasattr(visual, "conv1_alpha"):
            conv = visual.conv1
            visual.conv1_alpha = torch.nn.Conv2d(
                1, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride, bias=False
            )
            torch.nn.init.zeros_(visual.conv1_alpha.weight)
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.device = device
        self._alpha: torch.Tensor | None = None
        self.identity: dict[str, str] = {"variant": "in-memory model"}
        visual.conv1.register_forward_hook(self._add_alpha)

    def _add_alpha(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._alpha is None:
            raise RuntimeError("AlphaCLIP vision tower called without an alpha mask")
        alpha = self._alpha.to(output.dtype)
        return output + self.model.visual.conv1_alpha(alpha)

    def load_visual(self, state: dict[str, torch.Tensor]) -> None:
        """Loads an official-layout Alpha-CLIP vision state dict, strictly."""
        self.model.visual.load_state_dict(official_to_open_clip_visual(state), strict=True)

    def preprocess(
        self, images: np.ndarray, alphas: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) images in [0, 1] and (N, H, W) alphas -> normalized tensors at the
        tower's size, resized identically."""
        size = (self.image_size, self.image_size)
        x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        a = torch.as_tensor(np.ascontiguousarray(alphas), dtype=torch.float32)[:, None]
        a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        return (x - mean) / std, (a - ALPHA_MEAN) / ALPHA_STD

    @torch.no_grad()
    def encode_image(self, images: np.ndarray, alphas: np.ndarray) -> torch.Tensor:
        """L2-normalized image features (N, D)."""
        pixels, alpha = self.preprocess(images, alphas)
        self._alpha = alpha.to(self.device)
        try:
            features = self.model.encode_image(pixels.to(self.device))
        finally:
            self._alpha = None
        return F.normalize(features.float(), dim=-1).cpu()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()

    @classmethod
    def load(
        cls,
        alpha_clip: str | None,
        clip: str | None,
        variant: str = DEFAULT_VARIANT,
        device: str = "cpu",
    ) -> AlphaCLIP:
        """Builds the model from an Alpha-CLIP vision checkpoint (`alpha_clip`, or the
        PARTEDIT_BENCH_ALPHA_CLIP variable) and OpenAI CLIP weights of the same architecture
        (`clip`, the PARTEDIT_BENCH_CLIP variable, or open_clip's cache).

        Raises:
            UserError: a checkpoint is missing or does not fit the variant.
        """
        import open_clip

        if variant in VARIANTS:
            spec = VARIANTS[variant]
        elif variant in open_clip.list_models():  # any open_clip (QuickGELU) architecture
            spec = AlphaClipVariant(variant, variant, "a checkpoint of this architecture")
        else:
            known = ", ".join(VARIANTS)
            raise UserError(
                f"unknown Alpha-CLIP variant '{variant}' (known: {known}, or an "
                "open_clip model name)"
            )
        alpha_clip = alpha_clip or os.environ.get(ENV_ALPHA_CLIP)
        clip = clip or os.environ.get(ENV_CLIP)
        if not alpha_clip:
            raise UserError(
                f"no Alpha-CLIP checkpoint: pass --alpha-clip PATH or set "
                f"{ENV_ALPHA_CLIP} (official file {spec.checkpoint} from SunzeY/AlphaCLIP)"
            )
        for given, flag in ((alpha_clip, "--alpha-clip"), (clip, "--clip")):
            if given and not Path(given).is_file():  # before any model or hub look-up
                raise UserError(f"{flag}: checkpoint not found: {given}")
        alpha_state = read_state_dict(alpha_clip)  # an unreadable file stops before the hub
        if clip:
            model = open_clip.create_model(spec.open_clip_name, pretrained=None)
            missing, unexpected = model.load_state_dict(read_state_dict(clip), strict=False)
            if missing or unexpected:
                raise UserError(
                    f"{clip} is not an open_clip {spec.open_clip_name} state dict "
                    f"({len(missing)} missing, {len(unexpected)} unexpected keys)"
                )
        else:
            try:
                model = _openai_clip(open_clip, spec.open_clip_name)
            except Exception as exc:
                raise UserError(
                    f"no OpenAI CLIP {variant} weights for the text tower: pass --clip "
                    f"PATH or set {ENV_CLIP} (open_clip's cache had none: "
                    f"{type(exc).__name__})"
                ) from exc
        scorer = cls(
            model,
            open_clip.get_tokenizer(spec.open_clip_name),
            model.visual.image_size[0]
            if isinstance(model.visual.image_size, tuple)
            else model.visual.image_size,
            device,
        )
        try:
            scorer.load_visual(alpha_state)
        except RuntimeError as exc:
            raise UserError(
                f"{alpha_clip} does not fit Alpha-CLIP {variant}: {str(exc).splitlines()[0]}"
            ) from exc
        scorer.identity = {
            "variant": variant,
            "alpha_clip": file_fingerprint(alpha_clip),
            "clip": file_fingerprint(clip) if clip else "open_clip:openai",
        }
        return scorer


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host answers a TCP connection (a machine without network fails at
    once instead of spending a minute in download retries)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _openai_clip(open_clip: Any, name: str) -> Any:
    """open_clip's OpenAI weights: from the local cache first (no network), then from the hub
    when it can be reached, its retry and failure logs kept off the terminal."""
    import logging

    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    logging.disable(logging.ERROR)
    try:
        constants.HF_HUB_OFFLINE = True
        try:
            return open_clip.create_model(name, pretrained="openai")
        except Exception:
            if offline or not _hub_reachable():
                raise
        constants.HF_HUB_OFFLINE = offline
        return open_clip.create_model(name, pretrained="openai")
    finally:
        constants.HF_HUB_OFFLINE = offline
        logging.disable(logging.NOTSET)
