"""One PartEdit edit: the prompts and part tokens, the attention state, then the denoising
loop of the synthetic, EF-DDPM-real or LEDITS++-real path (see `run_partedit`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from partedit_bench.api import EditResult
from partedit_bench.data.schema import Sample
from partedit_bench.engine import inversion
from partedit_bench.engine.alignment import NotWordAligned
from partedit_bench.engine.backbones import added_conditioning as _added
from partedit_bench.errors import UserError
from partedit_bench.methods.partedit import core, words
from partedit_bench.methods.partedit.options import PartEditOptions, parts_of, plain_prompt


def encode_prompt(backbone: Any, prompt: str) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
    """(cond, uncond) prompt embeddings as the diffusers pipeline makes them for CFG, and for
    SDXL the (cond, uncond) pooled embeddings."""
    pipe = backbone.pipeline()
    if backbone.family == "sdxl":
        cond, uncond, pooled, pooled_uncond = pipe.encode_prompt(
            prompt,
            device=backbone.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
        )
        return cond, uncond, pooled, pooled_uncond
    cond, uncond = pipe.encode_prompt(prompt, backbone.device, 1, True)
    return cond, uncond, None, None


@dataclass
class PartEditRun:
    """An edit and what the tests and benchmarks look at: the regenerated or inverted source,
    the final latents of every path, the normalized maps of every step before thresholding
    (with `keep_maps`), Otsu's k and the number of blending attention calls per step."""

    result: EditResult
    source: Any
    latents: torch.Tensor
    maps: list[dict[str, torch.Tensor]]
    otsu: list[float | None]
    blends: list[int]


def mask_size(backbone: Any, choice: str) -> tuple[int, int]:
    """Where the mask is aggregated and thresholded: `auto` = 1024 x 1024 on SDXL (the released
    pipeline's fixed size, whatever the image size) and the backbone's pixel resolution on the
    other families (no released code; the same mechanics at that backbone's image size);
    `latent`, `pixel`, or a size in pixels."""
    latent = backbone.latent_resolution
    if choice == "auto":
        size = 1024 if backbone.family == "sdxl" else backbone.resolution
    elif choice == "latent":
        size = latent
    elif choice == "pixel":
        size = backbone.resolution
    elif choice.isdigit() and int(choice) > 0:
        size = int(choice)
    else:
        raise UserError(
            f"partedit.mask_resolution: {choice!r} is not auto, latent, pixel or a size in pixels"
        )
    return size, size


def prompt_swap(
    backbone: Any, sample: Sample, source: str, edit: str, options: PartEditOptions
) -> tuple[words.WordSwap | None, str]:
    """The prompt-to-prompt layer of this sample and what the record says of it."""
    if not options.p2p:
        return None, "off"
    window_words = sample.edit if options.p2p_words == "edit" and sample.edit else None
    try:
        swap = words.word_swap(
            backbone.components["tokenizer"],
            source,
            edit,
            window_words,
            options.cross_replace,
            options.steps,
        )
    except NotWordAligned as exc:
        return None, f"skipped: {exc}"
    return swap, "on"


@torch.no_grad()
def run_partedit(
    backbone: Any,
    sample: Sample,
    image: Any,
    seed: int,
    options: PartEditOptions,
    tokens: dict[str, Any],
    synthetic: bool,
    paths: int = 2,
    keep_maps: bool = False,
    given_mask: Any = None,
) -> PartEditRun:
    """One PartEdit edit.

    Args:
        paths: 2 (this project: source and edit) or 3 (the official batch with a localization
            path, from reference.py; single part).
        keep_maps: keep every step's normalized maps (at the mask resolution) in the result.
        given_mask: an (H, W) mask at the image's size that replaces the token mask (option
            `mask_source`): no token is used, and it blends from the first step while the step
            is below t_e, at every layer where the token mask would.
    """
    from partedit_bench.engine.attention import processors

    # 1. prompts: the source and the edit, encoded (SDXL: with pooled embeddings)
    unet = backbone.unet
    parts = parts_of(sample)
    source_prompt, edit_prompt = sample.prompt_original, plain_prompt(sample)
    c_src, u_src, p_src, pu_src = encode_prompt(backbone, source_prompt)
    c_edit, u_edit, p_edit, pu_edit = encode_prompt(backbone, edit_prompt)
    # 2. the part tokens, padded to the prompt length (none when the mask is given)
    padded = {
        part: core.pad_token(tokens[part].embedding.to(backbone.device), options.padding, c_src[0])
        for part in (parts if given_mask is None else [])
    }
    fixed = None
    if given_mask is not None:
        fixed = torch.as_tensor(np.asarray(given_mask, dtype=np.float32), device=backbone.device)
    # 3. the attention state: word swap, mask resolution and timing, blending, layers
    size = backbone.latent_resolution
    swap, p2p_status = prompt_swap(backbone, sample, source_prompt, edit_prompt, options)
    attn_res = -(-backbone.resolution // 32)  # the released pipeline's attn_res, ceil(W / 32)
    state = core.EditState(
        paths=paths,
        latent_size=(size, size),
        mask_size=mask_size(backbone, options.mask_resolution),
        threshold=options.threshold,
        omega=options.omega,
        timing=options.mask_timing,
        t_e=options.t_e,
        total_calls=len(unet.attn_processors),
        token_layers=set()
        if fixed is not None
        else localization_layers(unet, options.layers, [tokens[p] for p in parts]),
        swap=swap,
        self_replace_steps=int(options.steps * options.self_replace),
        self_replace_tokens=attn_res * attn_res,
        fixed_mask=fixed,
        keep_maps=keep_maps,
    )
    # 4. the batch rows and the processors that read and write them
    rows = {
        "u_src": u_src,
        "u_edit": u_edit,
        "c_src": c_src,
        "c_edit": c_edit,
        "p_src": p_src,
        "pu_src": pu_src,
        "p_edit": p_edit,
        "pu_edit": pu_edit,
    }
    if paths == 3:
        from partedit_bench.methods.partedit.reference import reference_setup

        context, added, installed = reference_setup(backbone, state, rows, padded)
    else:
        state.padded_tokens = padded
        context = torch.cat([u_src, u_edit, c_src, c_edit])
        added = _added(backbone, [pu_src, pu_edit, p_src, p_edit])
        installed = {
            n.removesuffix(".processor"): core.PartEditProcessor(
                n.removesuffix(".processor"), state
            )
            for n in unet.attn_processors
        }
    # 5. the start of the source path: generation (synthetic) or an inversion (real)
    prediction = backbone.components["scheduler"].config.prediction_type
    real = options.mode == "real" or (options.mode == "auto" and not synthetic)
    generator = torch.Generator("cpu").manual_seed(seed if real else sample.seed)
    step_times: list[float] = []

    def guided(out: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
        uncond, cond = out.chunk(2)
        return torch.cat(
            [
                uncond[i : i + 1] + s * (cond[i : i + 1] - uncond[i : i + 1])
                for i, s in enumerate(scales)
            ]
        )

    def begin_step(i: int) -> float:
        state.begin_step(i)
        return time.perf_counter()

    def end_step(start: float) -> None:
        if state.timing == "lagged":
            state.finish_step()
        step_times.append(time.perf_counter() - start)

    ledits = real and options.inversion == "ledits"
    source_context = torch.cat([u_src, c_src])
    source_added = _added(backbone, [pu_src, p_src])

    def predict_source(x: torch.Tensor, t: int) -> torch.Tensor:
        out = unet(
            torch.cat([x, x]),
            t,
            encoder_hidden_states=source_context,
            added_cond_kwargs=source_added,
        ).sample
        return guided(out, (options.source_guidance,))

    solver: Any = None
    noises: Any = None
    if ledits:
        with processors(unet, {n: _plain() for n in installed}):
            inv = ledits_inversion(backbone, image, predict_source, options, generator, prediction)
        solver, noises, start_latents = inv.solver, inv.zs, inv.x_T
        timesteps = solver.timesteps
        scales = (options.source_guidance, options.guidance, options.source_guidance)[:paths]
    elif not real:
        scheduler = type(backbone.components["scheduler"]).from_config(
            backbone.components["scheduler"].config
        )
        scheduler.set_timesteps(options.steps, device=backbone.device)
        timesteps = scheduler.timesteps
        # as diffusers' randn_tensor: drawn on the CPU generator in the latents' dtype (the
        # released pipeline draws all its rows at once; the first row is the same draw)
        x = torch.randn(
            (1, unet.config.in_channels, size, size),
            generator=generator,
            dtype=c_src.dtype,
            device="cpu",
        )
        start_latents = x.to(backbone.device) * scheduler.init_noise_sigma
        scales = (options.guidance,) * paths
    # 6. the denoising loop: every step localizes, blends and steps both paths
    with processors(unet, installed):
        if not real or ledits:
            latents = start_latents.to(c_src.dtype).repeat(paths, 1, 1, 1)
            for i, t in enumerate(timesteps):
                start = begin_step(i)
                inp = torch.cat([latents, latents])
                if solver is None:
                    inp = scheduler.scale_model_input(inp, t)
                out = unet(inp, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
                if solver is None:
                    latents = scheduler.step(guided(out, scales), t, latents).prev_sample
                else:
                    work = noises[i].dtype
                    stepped = solver.step(
                        i, guided(out, scales).to(work), latents.to(work), noises[i]
                    )
                    latents = stepped.to(c_src.dtype)
                if paths == 3:
                    latents[2] = latents[0]  # the localization path restarts from the source
                end_step(start)
        else:
            x0 = backbone.encode_images([image])
            with processors(unet, {n: _plain() for n in installed}):
                inv = inversion.invert(
                    predict_source,
                    x0,
                    backbone.components["scheduler"],
                    options.steps,
                    generator,
                    prediction,
                    zero_last_noise=options.zero_last_noise,
                )
            latents = inv.xs[0].to(c_src.dtype).repeat(paths, 1, 1, 1)
            scales = (options.source_guidance, options.guidance, options.source_guidance)[:paths]
            for i, t in enumerate(inv.timesteps):
                start = begin_step(i)
                out = unet(
                    torch.cat([latents, latents]),
                    t,
                    encoder_hidden_states=context,
                    added_cond_kwargs=added,
                ).sample
                work = inv.alphas[i].dtype
                eps, x0_hat = inversion.to_eps_x0(
                    guided(out, scales).to(work), latents.to(work), inv.alphas[i], prediction
                )
                mean, sigma = inversion.ddpm_mean_sigma(
                    eps, x0_hat, inv.alphas[i], inv.alphas[i + 1]
                )
                stepped = mean + sigma * inv.zs[i]
                stepped[0] = inv.xs[i + 1][0]  # the source path is the inverted trajectory
                if paths == 3:
                    stepped[2] = inv.xs[i + 1][0]
                latents = stepped.to(c_src.dtype)
                end_step(start)
    # 7. the images, the mean blend mask and what the job records
    edited, source = backbone.decode_latents(latents[[1, 0]])
    mean_mask = state.mean_mask()
    predicted = None if mean_mask is None else core.numpy_mask(mean_mask, image.size)
    extras: dict[str, Any] = {
        "mode": "real" if real else "synthetic",
        "parts": parts,
        "edit_prompt": edit_prompt,
        "p2p_replacement": p2p_status,
        "mask_source": options.mask_source,
    }
    if p2p_status.startswith("skipped"):
        extras["notes"] = ["prompt-to-prompt layer skipped: prompts differ in word count"]
    if real:
        extras["inversion"] = options.inversion
    result = EditResult(
        image=edited, predicted_mask=predicted, step_times=step_times, extras=extras
    )
    return PartEditRun(result, source, latents, state.step_maps, state.otsu_k, state.blends)


def ledits_inversion(
    backbone: Any,
    image: Any,
    predict_source: Any,
    options: PartEditOptions,
    generator: torch.Generator,
    prediction: str,
) -> Any:
    """LEDITS++'s inversion (`partedit_bench.engine.inversion.ledits_invert`: SDE-DPM-Solver++ of
    order 2 on LEDITS++'s timesteps, skipping the first `ledits_skip` of the schedule) of the
    image under the source prompt's guided prediction; its solver steps the edit."""
    from partedit_bench.engine import inversion

    x0 = backbone.encode_images([image])
    return inversion.ledits_invert(
        predict_source,
        x0,
        backbone.components["scheduler"],
        options.steps,
        options.ledits_skip,
        generator,
        prediction,
    )


def localization_layers(unet: Any, choice: str, tokens: list[Any]) -> set[str]:
    """The cross-attention layers whose maps localize: `auto` = the released pipeline's 40
    layers on SDXL's UNet (70 cross-attention layers) and the tokens' own training layers on
    any other UNet; `token`; every decoder cross-attention layer; `official-40`; or an explicit
    comma-separated list of attn2 module names."""
    from partedit_bench.engine.attention import cross_attention_layers

    if choice == "auto":
        choice = "official-40" if len(cross_attention_layers(unet)) == 70 else "token"
    if choice == "token":
        return set().union(*(set(t.layers) for t in tokens))
    if choice == "decoder":
        return set(cross_attention_layers(unet, "up"))
    if choice == "official-40":
        return set(official_40(cross_attention_layers(unet)))
    names = {n.strip() for n in choice.split(",") if n.strip()}
    unknown = sorted(names - set(cross_attention_layers(unet)))
    if unknown:
        raise UserError(
            f"partedit.layers: {unknown[0]} is not a cross-attention layer of this "
            "UNet (use token, decoder, or attn2 module names)"
        )
    return names


#: The released SDXL code's LAYERS_TO_USE: indices into the 70 cross-attention calls of a step
#: as they are stored, in execution order (down 0-23, mid 24-33, up 34-69).
OFFICIAL_40 = (*range(24, 60), 0, 1, 2, 3)


def official_40(layers: list[str]) -> list[str]:
    """The official pipeline's 40 SDXL localization layers (mid block, the first 26 of
    up_blocks.0 and the 4 of down_blocks.1), given the cross-attention layers in execution
    order."""
    if len(layers) != 70:
        raise UserError(
            f"partedit.layers=official-40 is defined on SDXL's 70 cross-attention "
            f"layers; this UNet has {len(layers)}"
        )
    return [layers[i] for i in OFFICIAL_40]


def _plain() -> Any:
    from diffusers.models.attention_processor import AttnProcessor

    return AttnProcessor()
