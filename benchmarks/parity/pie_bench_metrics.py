"""Parity of the suite's PIE-Bench metrics with PIE-Bench's own evaluation code.

Runs cure-lab/PnPInversion's `evaluation/matrics_calculator.py` (MetricsCalculator, as its
`evaluation/evaluate.py` calls it) and `partedit_bench.metrics` on the same images with the
same networks, and prints the largest difference per metric. The official code stays in a
scratch folder outside this repository; this harness is the glue, each adaptation named:

1. `torch.hub.load('facebookresearch/dino:main', 'dino_vitb8')` (a download) is answered
   with DINO's own `vision_transformer.vit_base(patch_size=8)` from a checkout of
   facebookresearch/dino, holding the weights of the suite's timm model: the same weights in
   both architectures (`--networks random`: ViT-B/8 at its real size, which the reference's
   hard-coded layer 11 and 12 heads need, with random weights), so the architectures are
   compared too.
2. torchmetrics' CLIPScore is given the suite's CLIP model and processor instead of loading
   `openai/clip-vit-large-patch14`, and (transformers 5 returns output objects from
   `get_image_features` / `get_text_features`, which torchmetrics 1.9 does not unwrap) a thin
   wrapper returns their pooled tensors.
3. torchmetrics' LPIPS (`net_type='squeeze'`) is given the suite's LPIPS network (torchvision's
   SqueezeNet weights are a download; with `--networks random`, a random SqueezeNet with the
   shipped linear layers).

Inputs: scikit-image's astronaut (512 x 512) and an edit of it (a recolored square, noise
elsewhere), a part mask, and an edit prompt. Usage (the official code at the commits named in
the metrics README, exported without history):

    git --git-dir MIRROR/cure-lab+PnPInversion archive HEAD evaluation | tar -x -C /tmp/pie
    git --git-dir MIRROR/facebookresearch+dino archive HEAD vision_transformer.py utils.py \\
        | tar -x -C /tmp/dino
    .venv/bin/python -m benchmarks.parity.pie_bench_metrics --pie /tmp/pie --dino /tmp/dino \\
        [--networks random|real] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

PROMPT = "a woman astronaut with a red square on her suit"


def inputs() -> tuple[Image.Image, Image.Image, np.ndarray]:
    """The source, an edit of it and the edited part (bool, H x W)."""
    from skimage import data

    source = data.astronaut()
    rng = np.random.default_rng(0)
    edit = source.astype(np.float64) + rng.normal(0, 6, source.shape)
    mask = np.zeros(source.shape[:2], bool)
    mask[300:420, 200:330] = True
    edit[mask] = (0.3 * edit[mask] + 0.7 * np.array([220, 30, 40])).clip(0, 255)
    edit = np.clip(np.round(edit), 0, 255).astype(np.uint8)
    return Image.fromarray(source), Image.fromarray(edit), mask


class PooledCLIP(torch.nn.Module):
    """Adaptation 2: the CLIP model whose `get_*_features` return the pooled tensors."""

    def __init__(self, model: Any):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.model.get_image_features(*args, **kwargs)
        return getattr(out, "pooler_output", out)

    def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.model.get_text_features(*args, **kwargs)
        return getattr(out, "pooler_output", out)


def dino_twin(dino_dir: Path, timm_model: Any) -> Any:
    """Adaptation 1: DINO's own ViT with the timm model's weights."""
    sys.path.insert(0, str(dino_dir))
    import vision_transformer as vits  # the official file, from the scratch checkout

    embed = timm_model.embed_dim
    heads = timm_model.blocks[0].attn.num_heads
    patch = timm_model.patch_embed.patch_size[0]
    model = vits.VisionTransformer(
        img_size=[224], patch_size=patch, embed_dim=embed, depth=len(timm_model.blocks),
        num_heads=heads, mlp_ratio=4, qkv_bias=True, num_classes=0,
        norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6),
    )  # fmt: skip
    state = {
        k: v for k, v in timm_model.state_dict().items() if not k.startswith(("fc_norm", "head"))
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not map: missing {missing}, unexpected {unexpected}")
    return model.eval()


def official(pie_dir: Path, dino_dir: Path, nets: Any) -> Any:
    """PIE-Bench's MetricsCalculator with adaptations 1-3."""
    import torchmetrics.image.lpip as lpip
    import torchmetrics.multimodal.clip_score as clip_score

    sys.path.insert(0, str(pie_dir))
    twin = dino_twin(dino_dir, nets.dino_b8)
    hub_load = torch.hub.load
    torch.hub.load = lambda *a, **k: twin  # adaptation 1
    clip_loader = clip_score._get_clip_model_and_processor
    clip_score._get_clip_model_and_processor = lambda *_: (  # type: ignore[assignment]  # 2
        PooledCLIP(nets.clip_l14[0]),
        nets.clip_l14[1],
    )
    lpips_class: Any = lpip._NoTrainLpips
    lpip._NoTrainLpips = lambda **_: nets.lpips  # type: ignore[misc,assignment]  # adaptation 3
    try:
        from evaluation.matrics_calculator import MetricsCalculator

        return MetricsCalculator("cpu")
    finally:
        torch.hub.load = hub_load
        clip_score._get_clip_model_and_processor = clip_loader
        lpip._NoTrainLpips = lpips_class  # type: ignore[misc]


def measure(pie_dir: Path, dino_dir: Path, kind: str) -> dict[str, Any]:
    from partedit_bench.metrics import functional as F
    from partedit_bench.metrics import networks as N

    nets = N.load_networks(["pie"], kind)
    calc = official(pie_dir, dino_dir, nets)
    source, edit, mask = inputs()
    keep = (1 - mask.astype(np.float64))[..., None].repeat(3, axis=2)  # as evaluate.py passes it
    part = mask.astype(np.float64)[..., None].repeat(3, axis=2)
    a, b = np.asarray(source) / 255.0, np.asarray(edit) / 255.0
    pairs = {
        "structure_distance": (
            float(calc.calculate_structure_distance(source, edit, None, None)),
            N.structure_distance(nets.dino_b8, a, b),
        ),
        "lpips_bg": (
            float(calc.calculate_lpips(source, edit, keep, keep)),
            N.lpips_bg(nets.lpips, a, b, mask),
        ),
        "mse_bg_pie": (calc.calculate_mse(source, edit, keep, keep), F.mse_bg_pie(a, b, mask)),
        "psnr_bg_pie": (calc.calculate_psnr(source, edit, keep, keep), F.psnr_bg_pie(a, b, mask)),
        "ssim_bg_pie": (calc.calculate_ssim(source, edit, keep, keep), F.ssim_bg_pie(a, b, mask)),
        "clip_whole": (
            calc.calculate_clip_similarity(edit, PROMPT, None),
            N.clip_score(nets.clip_l14, b, PROMPT),
        ),
        "clip_edited": (
            calc.calculate_clip_similarity(edit, PROMPT, part),
            N.clip_score(nets.clip_l14, b, PROMPT, mask),
        ),
    }
    # the reference computes PSNR, MSE and SSIM in float32; the same torchmetrics functions
    # in float64 on the same zero-filled images separate the formula from the rounding
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    x, y = (torch.from_numpy(v * keep).permute(2, 0, 1)[None] for v in (a, b))
    float64 = {
        "mse_bg_pie": (float(((x - y) ** 2).mean()), F.mse_bg_pie(a, b, mask)),
        "psnr_bg_pie": (float(peak_signal_noise_ratio(x, y, data_range=1.0)),
                        F.psnr_bg_pie(a, b, mask)),
        "ssim_bg_pie": (float(structural_similarity_index_measure(x, y, data_range=1.0)),  # type: ignore[arg-type]
                        F.ssim_bg_pie(a, b, mask)),
    }  # fmt: skip
    return {
        "networks": kind,
        "float64": {
            name: {"torchmetrics_float64": o, "ours": s, "abs_diff": abs(o - s)}
            for name, (o, s) in float64.items()
        },
        "metrics": {
            name: {"official": float(o), "ours": float(s), "abs_diff": abs(float(o) - float(s))}
            for name, (o, s) in pairs.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pie", required=True, help="a checkout (or export) of PnPInversion")
    parser.add_argument("--dino", required=True, help="facebookresearch/dino's files")
    parser.add_argument("--networks", default="random", choices=["random", "real"])
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(Path(args.pie), Path(args.dino), args.networks)
    print(f"{'metric':20} {'PIE-Bench code':>16} {'partedit-bench':>16} {'|diff|':>10}")
    for name, row in result["metrics"].items():
        print(f"{name:20} {row['official']:16.9g} {row['ours']:16.9g} {row['abs_diff']:10.2e}")
    print("\nthe same formulas in float64 (torchmetrics on the zero-filled images):")
    for name, row in result["float64"].items():
        print(f"{name:20} {row['torchmetrics_float64']:16.9g} {row['ours']:16.9g} "
              f"{row['abs_diff']:10.2e}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
