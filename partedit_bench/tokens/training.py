"""Training part tokens: decoupled (against cached queries, the released code) or coupled
(through the UNet each step, the paper's text), with the held-out mIoU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from partedit_bench.data.schema import Sample, load_image, load_mask
from partedit_bench.engine.attention import (
    RecordingAttnProcessor,
    module,
    probs_against,
    processors,
)
from partedit_bench.errors import UserError
from partedit_bench.tokens import PartToken, check_layer_count, token_layers, token_path

TIMESTEP_SCHEDULES = ("intermediate", "strength-0.25")


@dataclass
class TrainConfig:
    """How a token is trained (defaults from the paper and the released code)."""

    steps: int = 1000
    lr: float = 30.0
    step_size: int = 80
    gamma: float = 0.7
    loss: str = "bce"  # bce (paper) | mse (released code's default, on min-max normalized maps)
    timesteps: str = "strength-0.25"  # released code | intermediate (paper: 30..20 of 50)
    mode: str = "decoupled"  # decoupled (released code) | coupled (paper's text)
    layers: int | tuple[str, ...] = 8  # the first N decoder cross-attention layers, or names
    images: int = 16  # training images; the rest of the part's samples are held out
    heldout: int = 0  # at most this many held-out images (0: all the rest)
    seed: int = 0


def training_timesteps(backbone: Any, schedule: str, steps: int = 50) -> list[int]:
    """The timesteps a token is trained on, from a 50-step DDIM-style schedule: the paper's
    intermediate range (t = 30..20 of 50, i.e. schedule positions 20..30) or the released
    code's img2img strength 0.25 (the last quarter of the schedule)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
    scheduler.set_timesteps(steps)
    ts = [int(t) for t in scheduler.timesteps]
    if schedule == "intermediate":
        return ts[20:31]
    if schedule == "strength-0.25":
        return ts[int(steps * 0.75) :]
    raise UserError(f"unknown timestep schedule '{schedule}' ({', '.join(TIMESTEP_SCHEDULES)})")


@dataclass
class QueryCache:
    """Queries of the token layers, computed once per image with an empty prompt.

    queries[layer]: (images, timesteps, heads, N, hd); shapes[layer]: (h, w) of its map."""

    queries: dict[str, torch.Tensor]
    shapes: dict[str, tuple[int, int]]
    masks: torch.Tensor  # (images, H, W) float in {0, 1}
    timesteps: list[int]


@torch.no_grad()
def cache_queries(
    backbone: Any, samples: list[Sample], layers: list[str], timesteps: list[int], seed: int = 0
) -> QueryCache:
    """Runs the UNet once per (image, timestep) with an empty prompt and records the queries
    of the token layers."""
    images = [load_image(s.original_image) for s in samples]
    masks = torch.stack(
        [
            torch.from_numpy(load_mask(s.gt_mask, im.size).astype(np.float32))
            for s, im in zip(samples, images, strict=True)
        ]
    )
    latents = backbone.encode_images(images)
    context, added = backbone.encode_prompts([""])
    generator = torch.Generator("cpu").manual_seed(seed)
    store: dict[str, list[torch.Tensor]] = {}
    recorders = {n: RecordingAttnProcessor(n, store, record=("queries",)) for n in layers}
    with processors(backbone.unet, recorders):
        for index in range(latents.shape[0]):
            x0 = latents[index : index + 1]
            for t in timesteps:
                noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0)
                backbone.unet(
                    backbone.noise_to(x0, t, noise),
                    t,
                    encoder_hidden_states=context,
                    added_cond_kwargs=added,
                )
    h, w = latents.shape[-2:]
    queries, shapes = {}, {}
    for name in layers:
        stacked = torch.stack(store[f"{name}:queries"])  # (images*T, heads, N, hd)
        heads = module(backbone.unet, name).heads
        n = stacked.shape[-2]
        stacked = stacked.reshape(len(samples), len(timesteps), heads, n, -1)
        queries[name] = stacked.float()
        scale = int(round((h * w / n) ** 0.5))
        shapes[name] = (h // scale, w // scale)
    return QueryCache(queries, shapes, masks, timesteps)


def token_maps(
    backbone: Any,
    cache: QueryCache,
    embedding: torch.Tensor,
    index: slice | list[int] = slice(None),
) -> dict[str, torch.Tensor]:
    """Part-token maps from cached queries: softmax over the two tokens' keys, mean over heads.
    Returns layer -> (images, timesteps, h, w) in [0, 1]."""
    maps = {}
    for name, q in cache.queries.items():
        q = q[index]
        b, t, heads, n, hd = q.shape
        attn = module(backbone.unet, name)
        probs = probs_against(attn, q.reshape(b * t * heads, n, hd).to(embedding.dtype), embedding)
        part = probs[..., 1].reshape(b, t, heads, n).mean(dim=2)
        maps[name] = part.reshape(b, t, *cache.shapes[name])
    return maps


def token_loss(maps: dict[str, torch.Tensor], masks: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean over layers, timesteps, pixels and images of BCE (or MSE on min-max normalized
    maps) between each map and the mask resized to it (area interpolation)."""
    total = []
    for part_map in maps.values():
        b, t, h, w = part_map.shape
        target = F.interpolate(masks[:, None], size=(h, w), mode="area").expand(b, t, h, w)
        if loss == "bce":
            total.append(F.binary_cross_entropy(part_map.clamp(1e-6, 1 - 1e-6), target))
        elif loss == "mse":
            flat = part_map.reshape(b, t, -1)
            low, high = flat.min(-1, keepdim=True)[0], flat.max(-1, keepdim=True)[0]
            normalized = ((flat - low) / (high - low + 1e-8)).reshape(b, t, h, w)
            total.append(F.mse_loss(normalized, target))
        else:
            raise UserError(f"unknown token loss '{loss}' (bce, mse)")
    return torch.stack(total).mean()


def aggregate_maps(maps: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Layers and timesteps averaged after a bilinear resize to `size`, min-max normalized
    per image: (images, H, W)."""
    resized = []
    for part_map in maps.values():
        b, t, h, w = part_map.shape
        up = F.interpolate(
            part_map.reshape(b * t, 1, h, w), size=size, mode="bilinear", align_corners=False
        )
        resized.append(up.reshape(b, t, *size).mean(dim=1))
    mean = torch.stack(resized).mean(dim=0)
    flat = mean.reshape(mean.shape[0], -1)
    low, high = flat.min(-1, keepdim=True)[0], flat.max(-1, keepdim=True)[0]
    return ((flat - low) / (high - low + 1e-8)).reshape(mean.shape)


def otsu_iou(maps: torch.Tensor, masks: torch.Tensor) -> list[float]:
    """IoU of each Otsu-binarized map with its mask."""
    from skimage.filters import threshold_otsu

    out = []
    for m, gt in zip(maps.detach().cpu().numpy(), masks.cpu().numpy() > 0.5, strict=True):
        pred = m >= threshold_otsu(m) if m.max() > m.min() else np.ones_like(gt)
        union = np.logical_or(pred, gt).sum()
        out.append(float(np.logical_and(pred, gt).sum() / union) if union else float("nan"))
    return out


@dataclass
class TrainResult:
    token: PartToken
    losses: list[float]
    miou: float
    miou_all_part: float
    miou_random: float
    seconds: float
    heldout: bool = True  # False: nothing was held out and the mIoU is on the training images


def train_token(
    backbone: Any, part: str, samples: list[Sample], config: TrainConfig, progress: Any = None
) -> TrainResult:
    """Trains E for `part` on the first `config.images` samples and measures held-out mIoU
    on the rest (on the training images when there is no rest)."""
    if not samples:
        raise UserError(f"no training images with part {part}")
    torch.manual_seed(config.seed)
    layers = token_layers(backbone, config.layers)
    timesteps = training_timesteps(backbone, config.timesteps)
    train, held = samples[: config.images], samples[config.images :] or samples[: config.images]
    if config.heldout:
        held = held[: config.heldout]
    start = time.perf_counter()
    initial = torch.randn(
        2,
        backbone.text_width,
        generator=torch.Generator("cpu").manual_seed(config.seed),
        device="cpu",
    ).to(backbone.device)
    embedding = torch.nn.Parameter(initial.clone())
    optimizer = torch.optim.AdamW([embedding], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    losses: list[float] = []
    if config.mode == "decoupled":
        cache = cache_queries(backbone, train, layers, timesteps, config.seed)
        masks = cache.masks.to(backbone.device)
        step_fn = lambda: token_loss(token_maps(backbone, cache, embedding), masks, config.loss)  # noqa: E731
    elif config.mode == "coupled":
        step_fn = coupled_step(backbone, train, layers, timesteps, embedding, config)
    else:
        raise UserError(f"unknown training mode '{config.mode}' (decoupled, coupled)")
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = step_fn()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if progress is not None:
            progress(losses[-1])
    seconds = time.perf_counter() - start
    held_cache = cache_queries(backbone, held, layers, timesteps, config.seed + 1)
    size = (int(held_cache.masks.shape[-2]), int(held_cache.masks.shape[-1]))
    with torch.no_grad():
        trained = otsu_iou(
            aggregate_maps(token_maps(backbone, held_cache, embedding), size), held_cache.masks
        )
        random_ = otsu_iou(
            aggregate_maps(token_maps(backbone, held_cache, initial), size), held_cache.masks
        )
    all_part = [float(m.mean()) for m in held_cache.masks]
    meta = {
        "backbone": backbone.name,
        "fingerprint": backbone.fingerprint,
        "width": backbone.text_width,
        "part": part,
        "layers": layers,
        "timesteps": timesteps,
        "timestep_schedule": config.timesteps,
        "loss": config.loss,
        "steps": config.steps,
        "lr": config.lr,
        "mode": config.mode,
        "seed": config.seed,
        "train_images": [s.id for s in train],
        "heldout_images": [s.id for s in held] if len(samples) > config.images else [],
        "heldout_miou": float(np.nanmean(trained)) if len(samples) > config.images else None,
        "train_miou": None if len(samples) > config.images else float(np.nanmean(trained)),
        "reference_miou": {
            "all_part_mask": float(np.mean(all_part)),
            "random_token": float(np.nanmean(random_)),
        },
        "final_loss": losses[-1] if losses else None,
        "train_seconds": round(seconds, 2),
        "random_weights": backbone.random_weights,
    }
    return TrainResult(
        PartToken(embedding.detach().cpu(), meta),
        losses,
        float(np.nanmean(trained)),
        float(np.mean(all_part)),
        float(np.nanmean(random_)),
        seconds,
        heldout=len(samples) > config.images,
    )


def coupled_step(
    backbone: Any,
    samples: list[Sample],
    layers: list[str],
    timesteps: list[int],
    embedding: torch.nn.Parameter,
    config: TrainConfig,
) -> Any:
    """The paper's formulation: the UNet is conditioned on E itself and the gradient flows
    through the whole network (weights frozen)."""
    images = [load_image(s.original_image) for s in samples]
    masks = torch.stack(
        [
            torch.from_numpy(load_mask(s.gt_mask, im.size).astype(np.float32))
            for s, im in zip(samples, images, strict=True)
        ]
    ).to(backbone.device)
    latents = backbone.encode_images(images)
    _, added = backbone.encode_prompts([""] * len(samples))
    generator = torch.Generator("cpu").manual_seed(config.seed)
    noised = [
        backbone.noise_to(
            latents,
            t,
            torch.randn(latents.shape, generator=generator, device="cpu").to(latents),
        )
        for t in timesteps
    ]
    h, w = latents.shape[-2:]

    def step() -> torch.Tensor:
        store: dict[str, list[torch.Tensor]] = {}
        recorders = {
            n: RecordingAttnProcessor(n, store, ("probs",), keep_grad=True) for n in layers
        }
        context = embedding[None].expand(len(samples), -1, -1).to(backbone.dtype)
        with processors(backbone.unet, recorders):
            for t, x_t in zip(timesteps, noised, strict=True):
                backbone.unet(x_t, t, encoder_hidden_states=context, added_cond_kwargs=added)
        maps = {}
        for name in layers:
            probs = torch.stack(store[f"{name}:probs"])  # (T, B*heads, N, 2)
            heads = module(backbone.unet, name).heads
            n = probs.shape[-2]
            part = probs[..., 1].reshape(len(timesteps), len(samples), heads, n).mean(2)
            scale = int(round((h * w / n) ** 0.5))
            maps[name] = (
                part.permute(1, 0, 2)
                .reshape(len(samples), len(timesteps), h // scale, w // scale)
                .float()
            )
        return token_loss(maps, masks, config.loss)

    return step


def train_tokens(
    backbones: list[str],
    parts: list[str],
    suite: Any,
    schedules: list[str],
    config: TrainConfig,
    root: Path | None,
    device: str,
    dtype: str,
    console: Any,
    exact_layers: bool = False,
) -> list[list[str]]:
    """`partedit-bench train-token`: for every backbone and part, a token trained with each
    timestep schedule (the first one saved under `root`, default benchmark_data/tokens), and
    one table row each (backbone, part, schedule, held-out mIoU, all-part mask and random-token
    baselines, loss first -> last, seconds); `exact_layers`: see `check_layer_count`."""
    import dataclasses

    from rich.progress import Progress

    from partedit_bench.engine.backbones import load_backbone

    rows = []
    for backbone_name in backbones:
        backbone = load_backbone(backbone_name, device, dtype)
        if isinstance(config.layers, int):
            check_layer_count(backbone, config.layers, exact_layers)
        for part in parts:
            samples = [s for s in suite.samples if s.part_token == part]
            for i, schedule in enumerate(schedules):
                one = dataclasses.replace(config, timesteps=schedule)
                with Progress(console=console, transient=True) as progress:
                    task = progress.add_task(f"{backbone_name} {part} {schedule}", total=one.steps)
                    result = train_token(
                        backbone,
                        part,
                        samples,
                        one,
                        lambda loss, t=task, p=progress: p.update(
                            t, advance=1, description=f"loss {loss:.4f}"
                        ),
                    )
                if i == 0:
                    path = result.token.save(token_path(backbone.name, part, root))
                    console.print(f"saved {path}")
                if not result.heldout:
                    console.print(
                        f"[yellow]{part}: no image held out ({len(samples)} images, "
                        f"--images {one.images}); its mIoU is on the training images[/]"
                    )
                rows.append(
                    [
                        backbone_name,
                        part,
                        schedule,
                        f"{result.miou:.3f}" + ("" if result.heldout else " (training)"),
                        f"{result.miou_all_part:.3f}",
                        f"{result.miou_random:.3f}",
                        f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}",
                        f"{result.seconds:.0f}",
                    ]
                )
    return rows
