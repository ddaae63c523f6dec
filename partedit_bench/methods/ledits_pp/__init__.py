"""`ledits_pp`: LEDITS++ (Brack et al., CVPR 2024), written here after its reference code
(ml-research/ledits_pp): edit-friendly inversion under SDE-DPM-Solver++(2), then semantic
guidance toward the edit concept inside an implicit mask."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from partedit_bench.api import EditMethod, EditRequest, EditResult, check_range
from partedit_bench.errors import UserError


@dataclass
class LeditsOptions:
    steps: int | None = None  # inversion (= editing) steps: 30 on SD, 100 on SDXL
    skip: float = 0.15
    source_guidance: float = 3.5
    edit_guidance: float = 5.0
    edit_threshold: float = 0.9
    warmup: int | None = None  # edit warm-up steps: 0 on SD, 10 on SDXL
    cooldown: int | None = None  # no guidance from this step on; None: never stops
    mask: Literal["intersect", "attention", "noise"] = "intersect"
    attention_resolution: int = 0  # 0: the latent side / 4 (16 on SD at 512, 32 on SDXL)
    zero_noise_steps: int = 0
    encode: Literal["auto", "mode", "sample"] = "auto"  # auto: mode on SD, sample on SDXL
    # the positions whose attention makes the mask: the reference's 1 .. 75 (it counts the
    # padded tokenization's length), or the concept's own tokens
    attention_tokens: Literal["reference", "concept"] = "reference"
    use_source_prompt: bool = False  # the reference inverts with an empty source prompt
    measure_reconstruction: bool = False

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_range("ledits_pp", "steps", self.steps, 2)
        check_range("ledits_pp", "skip", self.skip, 0, 0.99)
        check_range("ledits_pp", "edit_threshold", self.edit_threshold, 0, 1)
        for key in ("source_guidance", "edit_guidance", "attention_resolution"):
            check_range("ledits_pp", key, getattr(self, key), 0)
        for key in ("warmup", "cooldown", "zero_noise_steps"):
            if getattr(self, key) is not None:
                check_range("ledits_pp", key, getattr(self, key), 0)


def concept(sample: Any) -> str:
    """The edit concept LEDITS++ adds: the edit words with the part's plain words."""
    return f"{sample.edit} {sample.part}".strip()


class LeditsPP(EditMethod):
    """Edit-friendly inversion, then guidance toward the edit concept inside its implicit
    mask (cross-attention mask intersected with the guidance's magnitude by default)."""

    name = "ledits_pp"
    needs = frozenset({"target_prompt"})
    version = "2"
    Options = LeditsOptions
    step_options = ("warmup",)  # (None by default: resolved per family)
    smoke_options = {"steps": 4, "warmup": 1}

    def load(self, backbone: Any) -> None:
        self.backbone = backbone
        self.sdxl = backbone.family == "sdxl"

    def defaults(self) -> tuple[int, int, str]:
        o = self.options
        steps = o.steps or (100 if self.sdxl else 30)
        warmup = o.warmup if o.warmup is not None else (10 if self.sdxl else 0)
        encode = o.encode if o.encode != "auto" else ("sample" if self.sdxl else "mode")
        return steps, warmup, encode

    def edit(self, request: EditRequest) -> EditResult:
        run = edit_latents(self, request)
        image = self.backbone.decode_latents(run.latents)[0]
        predicted = None
        if run.masks:
            mean = torch.stack(run.masks).mean(0)[None, None].float()
            size = request.image.size
            up = F.interpolate(mean, size=(size[1], size[0]), mode="bilinear")[0, 0]
            predicted = up.clamp(0, 1).cpu().numpy()
        return EditResult(image=image, predicted_mask=predicted, extras=run.extras)


@dataclass
class LeditsRun:
    latents: torch.Tensor
    masks: list[torch.Tensor]  # the guided steps' implicit masks at the latent size
    extras: dict[str, Any]


def encode_image_latents(
    backbone: Any, image: Any, how: str, generator: torch.Generator
) -> torch.Tensor:
    """x0: the VAE posterior's mode (the SD reference) or a sample drawn from `generator`
    (the SDXL reference), at the backbone's size."""
    if how == "mode":
        return backbone.encode_images([image])
    from PIL import Image

    from partedit_bench.engine.precision import vae_precision

    size = (backbone.resolution, backbone.resolution)
    array = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), np.float32)
    pixels = torch.from_numpy(array / 127.5 - 1.0).permute(2, 0, 1)[None]
    vae = backbone.vae
    with vae_precision(vae):
        pixels = pixels.to(backbone.device, next(vae.parameters()).dtype)
        latents = vae.encode(pixels).latent_dist.sample(generator)
    return (latents * vae.config.scaling_factor).to(backbone.dtype)


def unconditional(backbone: Any) -> tuple[torch.Tensor, dict[str, Any] | None]:
    """The unconditional embedding: the empty prompt's on SD; zeros on SDXL when the pipeline
    zeroes empty negative prompts (`force_zeros_for_empty_prompt`, SDXL base's setting)."""
    embeds, added = backbone.encode_prompts([""])
    if backbone.family == "sdxl" and backbone.pipeline().config.force_zeros_for_empty_prompt:
        embeds = torch.zeros_like(embeds)
        added = {**added, "text_embeds": torch.zeros_like(added["text_embeds"])}
    return embeds, added


def _cat_added(parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if parts[0] is None:
        return None
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # type: ignore[index]


def gaussian_kernel(dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """The reference's 3 x 3 smoothing kernel: per axis exp(-((x - 1) / (2 sigma))^2) with
    sigma = 0.5 (so a Gaussian of std sigma * sqrt(2)), normalized, built in float32."""
    x = torch.arange(3, dtype=torch.float32, device=device)
    sigma = 0.5
    g = 1 / (sigma * math.sqrt(2 * math.pi)) * torch.exp(-(((x - 1) / (2 * sigma)) ** 2))
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).view(1, 1, 3, 3).to(dtype)


def attention_mask(
    maps: list[torch.Tensor], tokens: int, threshold: float, latent_hw: tuple[int, int]
) -> torch.Tensor:
    """The cross-attention mask of one step: the edit row's maps (heads, res, res, 77) of every
    down/up layer at the mask resolution, averaged over layers and heads, summed over the
    concept's tokens, smoothed (reflect pad, `gaussian_kernel`), thresholded at its
    `threshold` quantile, upsampled (nearest) to the latent: (h, w) of 0/1."""
    stacked = torch.cat(maps)
    mean = stacked.sum(0) / stacked.shape[0]
    word = mean[..., 1 : 1 + tokens].sum(-1)
    padded = F.pad(word[None, None], (1, 1, 1, 1), mode="reflect")
    smooth = F.conv2d(padded, gaussian_kernel(padded.dtype, padded.device))[0]  # (1, res, res)
    level = torch.quantile(smooth.flatten(1), threshold, dim=1)
    binary = torch.where(smooth >= level[:, None, None], 1.0, 0.0).to(smooth.dtype)
    return F.interpolate(binary[None], size=latent_hw)[0, 0]


def masked_guidance(
    guidance: torch.Tensor, threshold: float, mode: str, cross: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks the scaled guidance (1, C, h, w): `noise` keeps the positions where the
    channel-summed magnitude reaches its `threshold` quantile (the quantile taken in float32,
    as the reference); `attention` multiplies by the cross-attention mask; `intersect` by
    both. Returns the masked guidance and the mask (h, w)."""
    if mode == "attention":
        assert cross is not None
        return guidance * cross, cross
    magnitude = guidance.abs().sum(1, keepdim=True).repeat(1, guidance.shape[1], 1, 1)
    level = torch.quantile(magnitude.flatten(2).float(), threshold, dim=2).to(magnitude.dtype)
    keep = magnitude >= level[:, :, None, None]
    if mode == "noise":
        return torch.where(keep, guidance, torch.zeros_like(guidance)), keep[0, 0].to(guidance)
    assert cross is not None
    mask = torch.where(keep, torch.ones_like(guidance), torch.zeros_like(guidance)) * cross
    return guidance * mask, mask[0, 0]


class _MapRecorder:
    """Collects, per UNet call, the edit row's cross-attention probabilities of the layers
    whose query count is res^2 (and the query counts seen, for the error message)."""

    def __init__(self, pixels: int, row: int, rows: int):
        self.pixels, self.row, self.rows = pixels, row, rows
        self.maps: list[torch.Tensor] = []
        self.seen: set[int] = set()

    def processor(self, name: str) -> Any:
        from partedit_bench.engine.attention import RecordingAttnProcessor

        recorder = self

        class Recording(RecordingAttnProcessor):
            def _keep(self, kind: str, tensor: torch.Tensor) -> None:
                if kind != "probs":
                    return
                recorder.seen.add(tensor.shape[1])
                if tensor.shape[1] == recorder.pixels:
                    rows = tensor.view(recorder.rows, -1, *tensor.shape[1:])
                    side = math.isqrt(recorder.pixels)
                    edit = rows[recorder.row].reshape(-1, side, side, tensor.shape[-1])
                    recorder.maps.append(edit.to(torch.promote_types(edit.dtype, torch.float32)))

        return Recording(name, {}, record=("probs",))


@torch.no_grad()
def edit_latents(method: LeditsPP, request: EditRequest) -> LeditsRun:
    """Inverts the image and edits it; returns the final latents and the implicit masks."""
    from partedit_bench.engine import inversion
    from partedit_bench.engine.attention import cross_attention_layers, processors

    backbone, o = method.backbone, method.options
    steps, warmup, how = method.defaults()
    unet = backbone.unet
    prediction = backbone.components["scheduler"].config.prediction_type
    generator = torch.Generator("cpu").manual_seed(request.seed)
    x0 = encode_image_latents(backbone, request.image, how, generator)
    u_emb, u_added = unconditional(backbone)
    source = request.sample.prompt_original if o.use_source_prompt else ""
    extras: dict[str, Any] = {"concept": concept(request.sample), "inversion_steps": steps}

    if source:
        s_emb, s_added = backbone.encode_prompts([source])
        source_context = torch.cat([u_emb, s_emb])
        source_added = _cat_added([u_added, s_added])

        def predict_source(x: torch.Tensor, t: Any) -> torch.Tensor:
            u, c = unet(
                torch.cat([x, x]), t, source_context, added_cond_kwargs=source_added
            ).sample.chunk(2)
            return u + o.source_guidance * (c - u)
    else:

        def predict_source(x: torch.Tensor, t: Any) -> torch.Tensor:
            return unet(x, t, u_emb, added_cond_kwargs=u_added).sample

    with processors(unet, {}):
        inv = inversion.ledits_invert(
            predict_source,
            x0,
            backbone.components["scheduler"],
            steps,
            o.skip,
            generator,
            prediction,
            o.zero_noise_steps,
        )
        solver = inv.solver
        work = inv.x_T.dtype
        if o.measure_reconstruction:
            x = inv.x_T
            solver.reset()
            for i, t in enumerate(solver.timesteps):
                out = unet(x.to(x0.dtype), t, u_emb, added_cond_kwargs=u_added).sample
                x = solver.step(i, out.to(work), x, inv.zs[i])
            extras["reconstruction_max_abs"] = float((x - x0.to(work)).abs().max())
            extras["reconstruction_latent_psnr"] = latent_psnr(x, x0.to(work))

    c_emb, c_added = backbone.encode_prompts([concept(request.sample)])
    tokenizer = backbone.components["tokenizer"]
    if o.attention_tokens == "reference":
        tokens = tokenizer.model_max_length - 2
    else:
        tokens = len(tokenizer(concept(request.sample), truncation=True).input_ids) - 2
    context = torch.cat([u_emb, c_emb])
    added = _cat_added([u_added, c_added])
    latent_hw = (x0.shape[-2], x0.shape[-1])
    res = o.attention_resolution or x0.shape[-1] // 4
    recorder = _MapRecorder(res * res, row=1, rows=2)
    layers = [n for n in cross_attention_layers(unet) if not n.startswith("mid_block")]
    installed = {n: recorder.processor(n) for n in layers} if o.mask != "noise" else {}
    masks: list[torch.Tensor] = []
    x = inv.x_T
    solver.reset()
    with processors(unet, installed):
        for i, t in enumerate(solver.timesteps):
            recorder.maps = []
            out = unet(
                torch.cat([x, x]).to(x0.dtype), t, context, added_cond_kwargs=added
            ).sample.to(work)
            eps_u, eps_c = out.chunk(2)
            guided = eps_u
            active = i >= warmup and (o.cooldown is None or i < o.cooldown)
            if installed and not recorder.maps:
                sizes = sorted({math.isqrt(q) for q in recorder.seen}, reverse=True)
                raise UserError(
                    f"ledits_pp: no cross-attention layer at {res}x{res} (latent "
                    f"{latent_hw[1]}x{latent_hw[0]}); set ledits_pp.attention_resolution to one "
                    f"of {', '.join(map(str, sizes))}"
                )
            if active:
                cross = None
                if installed:
                    cross = attention_mask(recorder.maps, tokens, o.edit_threshold, latent_hw)
                    cross = cross.to(work)
                g, mask = masked_guidance(
                    (eps_c - eps_u) * o.edit_guidance, o.edit_threshold, o.mask, cross
                )
                guided = eps_u + g
                masks.append(mask)
            x = solver.step(i, guided, x, inv.zs[i])
    extras["guided_steps"] = len(masks)
    return LeditsRun(x.to(x0.dtype), masks, extras)


def latent_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR of latents against the reference's peak-to-peak range."""
    mse = float(((x - ref) ** 2).mean())
    peak = float(ref.max() - ref.min())
    return float(10 * np.log10(peak**2 / max(mse, 1e-30)))


METHOD = LeditsPP  # what `api.registry()` finds by the folder's name
