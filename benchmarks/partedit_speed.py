"""Edit cost per denoising step: plain CFG generation vs PartEdit (2 paths) vs the official
3-path formulation, on a real-size UNet architecture with random weights (the same cost as the
real weights), measured in one run.

    .venv/bin/python benchmarks/partedit_speed.py [--arch sd21] [--size 256] [--steps 3]

`--arch sdxl --size 1024` is the GPU configuration (prints peak memory on CUDA). Each step is one
UNet call on the whole batch plus, for PartEdit, the mask update (aggregation at the mask
resolution, Otsu, threshold, computed inside the step's last attention call as the released
pipeline does) and the mask resized for every blending layer. PartEdit is measured with the mask
at the latent size, at the image size (the default off SDXL) and at 1024 x 1024 (the released
SDXL pipeline's size, the default on SDXL); the differences are what the mask path costs.
Target: PartEdit / plain <= 2.1 with the backbone's default mask (the official formulation is
about 3).
"""

from __future__ import annotations

import argparse
import time

import torch

from partedit_bench.engine.attention import decoder_cross_attention_layers, processors
from partedit_bench.engine.fullsize import SD21_UNET, SDXL_UNET
from partedit_bench.methods.partedit import core
from partedit_bench.methods.partedit.reference import ReferenceProcessor

ARCHS = {"sd21": SD21_UNET, "sdxl": SDXL_UNET}  # the public configs (engine/fullsize.py)


def step_costs(unet: object, size: int, steps: int, report: bool = True) -> dict[str, object]:
    """Seconds per denoising step of plain CFG (diffusers' SDPA processors and explicit
    attention), PartEdit (2 paths; mask at the latent size, the image size and 1024) and the
    official 3-path formulation, on `unet` (its device and dtype) at `size` px, averaged over
    `steps` steps after one warm-up call; the mask path's own cost; the ratios."""
    from diffusers.models.attention_processor import AttnProcessor

    param = next(unet.parameters())  # type: ignore[attr-defined]
    device, dtype = str(param.device), param.dtype
    cuda = device.startswith("cuda")
    sdxl = unet.config.addition_embed_type == "text_time"  # type: ignore[attr-defined]
    width = unet.config.cross_attention_dim  # type: ignore[attr-defined]
    latent = size // 8
    config = unet.config  # type: ignore[attr-defined]
    pooled = (  # SDXL: 1280 (the pooled text embedding next to 6 time ids)
        config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        if sdxl
        else 0
    )
    names = [n.removesuffix(".processor") for n in unet.attn_processors]  # type: ignore[attr-defined]
    token_layers = set(decoder_cross_attention_layers(unet, 8))
    token = torch.randn(77, width, device=device, dtype=dtype)

    def added(batch: int):
        if not sdxl:
            return None
        return {
            "text_embeds": torch.randn(batch, pooled, device=device, dtype=dtype),
            "time_ids": torch.tensor(
                [[size, size, 0, 0, size, size]], device=device, dtype=dtype
            ).repeat(batch, 1),
        }

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    peaks: dict[str, float] = {}

    def measure(label: str, batch: int, installed: dict | None, state: core.EditState | None):
        latents = torch.randn(batch, 4, latent, latent, device=device, dtype=dtype)
        context = torch.randn(batch, 77, width, device=device, dtype=dtype)
        cond = added(batch)
        times = []
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad(), processors(unet, installed or {}):
            for step in range(steps + 1):  # the first call warms up
                sync()
                start = time.perf_counter()
                if state is not None:
                    state.begin_step(step + 1)  # blending from the first measured step
                unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=cond)  # type: ignore[operator]
                sync()
                if step:
                    times.append(time.perf_counter() - start)
        seconds = sum(times) / len(times)
        memory = ""
        if cuda:
            peaks[label] = torch.cuda.max_memory_allocated() / 2**30
            memory = f", peak {peaks[label]:.1f} GiB"
        if report:
            print(f"{label:28s} batch {batch}: {seconds:7.3f} s/step{memory}")
        return seconds

    results = {}
    results["plain (SDPA)"] = measure("plain CFG (SDPA processors)", 2, None, None)
    results["plain"] = measure(
        "plain CFG (explicit attn)", 2, {n: AttnProcessor() for n in names}, None
    )

    def state(paths: int, mask: int) -> core.EditState:
        return core.EditState(
            paths=paths,
            token_layers=token_layers,
            latent_size=(latent, latent),
            mask_size=(mask, mask),
            total_calls=len(names),
            t_e=10**9,
            padded_tokens={"part": token},
        )

    def timed(s: core.EditState) -> list[float]:
        """Wraps the state's mask computation and per-layer resizing with a timer."""
        spent: list[float] = []
        for attr in ("finish_step", "_at_layer"):
            inner = getattr(s, attr)

            def wrapper(*a: object, _inner=inner) -> object:
                sync()
                start = time.perf_counter()
                out = _inner(*a)
                sync()
                spent.append(time.perf_counter() - start)
                return out

            setattr(s, attr, wrapper)
        return spent

    default_mask = 1024 if sdxl else size
    mask_cost = {}
    for label, mask in (("latent", latent), ("image", size), ("1024", 1024)):
        s2 = state(2, mask)
        spent = timed(s2)
        results[f"partedit {label}"] = measure(
            f"PartEdit, mask at {label} ({mask})",
            4,
            {n: core.PartEditProcessor(n, s2) for n in names},
            s2,
        )
        mask_cost[label] = sum(spent) / (steps + 1)
    results["partedit"] = results["partedit " + ("1024" if sdxl else "image")]
    s3 = state(3, default_mask)
    results["reference"] = measure(
        "official 3-path reference", 6, {n: ReferenceProcessor(n, s3) for n in names}, s3
    )
    ratios = {
        "PartEdit / plain (explicit attention)": results["partedit"] / results["plain"],
        "3-path / plain (explicit attention)": results["reference"] / results["plain"],
        "PartEdit / plain (SDPA)": results["partedit"] / results["plain (SDPA)"],
        "3-path / PartEdit": results["reference"] / results["partedit"],
    }
    return {
        "size": size,
        "steps": steps,
        "device": device,
        "dtype": str(dtype).split(".")[-1],
        "default_mask": default_mask,
        "seconds_per_step": results,
        "mask_path_seconds_per_step": mask_cost,
        "ratios": ratios,
        "peak_gib": peaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="sd21", choices=list(ARCHS))
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16" if torch.cuda.is_available() else "float32")
    args = parser.parse_args()
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**ARCHS[args.arch]).to(args.device, getattr(torch, args.dtype))
    costs = step_costs(unet.eval(), args.size, args.steps)
    print(f"{args.arch} {args.size}px on {args.device} ({args.dtype}), {args.steps} steps:")
    print(f"  default mask resolution {costs['default_mask']}")
    for label, cost in costs["mask_path_seconds_per_step"].items():  # type: ignore[union-attr]
        print(
            f"  mask path at {label:6s} (aggregate, Otsu, threshold, resize per layer): "
            f"{cost * 1000:7.1f} ms/step"
        )
    ratios = costs["ratios"]
    for label, ratio in ratios.items():  # type: ignore[union-attr]
        print(f"  {label:40s} {ratio:.2f}")
    met = ratios["PartEdit / plain (explicit attention)"] <= 2.1  # type: ignore[index]
    print(f"  target PartEdit / plain <= 2.1: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
