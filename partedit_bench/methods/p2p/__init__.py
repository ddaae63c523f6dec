"""`p2p`: Prompt-to-Prompt (Hertz et al., ICLR 2023) through attention processors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from partedit_bench.api import (
    EditMethod,
    EditRequest,
    EditResult,
    check_range,
    generation_target,
    target_prompt,
)
from partedit_bench.engine import inversion
from partedit_bench.engine.alignment import (
    NotWordAligned,
    positions_of_words,
    refinement_mapper,
    word_swap_mapper,
)
from partedit_bench.engine.attention import plain_qkv, project_out
from partedit_bench.methods.p2p.null_text import null_text_optimization

# batch rows: [uncond src, uncond tgt, cond src, cond tgt]; the reference controllers edit
# only the conditional half
ROW_LABELS = {"uncond_src": 0, "uncond_tgt": 1, "src": 2, "tgt": 3}
COND_SRC, COND_TGT = 2, 3


@dataclass
class P2POptions:
    steps: int = 50
    guidance: float = 7.5
    cross_replace: float = 0.4
    self_replace: float = 0.4
    self_max_tokens: int = 0  # 0: the reference's layer limit (README)
    local_blend: bool = True
    blend_threshold: float = 0.3
    blend_start: float = 0.2  # the null-text (real-image) version starts blending at 20%
    null_text: bool = True  # null-text inversion (Mokady et al., CVPR 2023), the reference's
    null_text_inner_steps: int = 10

    def __post_init__(self) -> None:
        check_range("p2p", "steps", self.steps, 1)
        for key in ("cross_replace", "self_replace", "blend_start"):
            check_range("p2p", key, getattr(self, key), 0, 1)
        check_range("p2p", "null_text_inner_steps", self.null_text_inner_steps, 1)


@dataclass
class Replacement:
    """How the target row's cross-attention maps come from the source row's.

    replace: target maps = source maps @ mapper (a (77, 77) word-swap mapper).
    refine: target token j takes the source's token mapper[j] where alphas[j] is 1 and keeps
    its own map elsewhere.
    """

    mode: str
    mapper: torch.Tensor
    alphas: torch.Tensor | None = None

    def apply(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        if self.mode == "replace":
            return src @ self.mapper.to(src.device, src.dtype)
        assert self.alphas is not None
        alphas = self.alphas.to(src.device, src.dtype)
        return src[..., self.mapper.to(src.device)] * alphas + tgt * (1 - alphas)


def replacement_for(tokenizer: Any, source: str, target: str) -> Replacement:
    """Replace (a word swap) when the prompts have the same word count, else Refine, as the
    reference notebooks choose between AttentionReplace and AttentionRefine."""
    try:
        mapper, _, _ = word_swap_mapper(tokenizer, source, target)
        return Replacement("replace", mapper)
    except NotWordAligned:
        mapper, alphas = refinement_mapper(tokenizer, source, target)
        return Replacement("refine", mapper, alphas)


@dataclass
class P2PState:
    step: int = 0
    cross_steps: int = 0
    self_steps: int = 0
    self_max_tokens: int = 256
    replacement: Replacement | None = None
    blend_tokens: int = 0  # Local Blend reads the layers of this many tokens (latent / 4) ...
    blend_mid: bool = False  # ... the mid block's too (SDXL port) or not (SD notebooks)
    blend_step: torch.Tensor | None = None  # this step's sum of their maps (2, N, 77)
    blend_sum: torch.Tensor | None = None  # the running sum over all steps so far
    probe: list[dict[str, Any]] | None = None


class P2PProcessor:
    """Explicit attention; in the conditional half of the batch replaces the target row's
    cross-attention maps (through the Replace or Refine mapping) during the first cross steps
    and its self-attention maps in small layers during the first self steps, as the reference
    controllers do; sums the conditional cross maps Local Blend reads (after replacement, as
    the reference's store sees them)."""

    def __init__(self, name: str, state: P2PState):
        self.name, self.state = name, state

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        query, key, value = plain_qkv(
            attn, hidden_states, encoder_hidden_states, attention_mask, "p2p"
        )
        state, heads, batch = self.state, attn.heads, hidden_states.shape[0]
        cross = encoder_hidden_states is not None
        probs = attn.get_attention_scores(query, key, None)
        probs = probs.view(batch, heads, *probs.shape[1:])
        tokens = probs.shape[2]
        replace_cross = cross and state.step < state.cross_steps and state.replacement is not None
        replace_self = (
            not cross and state.step < state.self_steps and tokens <= state.self_max_tokens
        )
        src, tgt = COND_SRC, COND_TGT
        if replace_cross or replace_self:
            probs = probs.clone()
            if replace_self:
                probs[tgt] = probs[src]
            else:
                assert state.replacement is not None
                probs[tgt] = state.replacement.apply(probs[src], probs[tgt])
        if cross and state.probe is not None:
            state.probe.append(
                {
                    "step": state.step,
                    "name": self.name,
                    **{label: probs[row].clone() for label, row in ROW_LABELS.items()},
                }
            )
        in_blend = tokens == state.blend_tokens and (
            state.blend_mid or not self.name.startswith("mid_block")
        )
        if cross and in_blend:
            # heads summed (2, N, 77), accumulated over layers and steps in float32 on purpose
            maps = probs[[src, tgt]].to(torch.promote_types(probs.dtype, torch.float32)).sum(1)
            state.blend_step = maps if state.blend_step is None else state.blend_step + maps
        out = torch.bmm(probs.reshape(batch * heads, *probs.shape[2:]), value)
        return project_out(attn, out)  # (no residual, no rescale: `plain_qkv` checked)


def local_blend_mask(
    maps: torch.Tensor, positions: list[list[int]], size: tuple[int, int], threshold: float
) -> torch.Tensor:
    """Local Blend from the summed maps (2, N, 77) of the source and target rows: the blend
    words' columns summed, 3x3 max-pooled, upsampled (nearest), normalized by their max,
    thresholded, united over the two rows."""
    side = int(round(maps.shape[1] ** 0.5))
    masks = []
    for row, pos in enumerate(positions):
        if not pos:
            continue
        m = maps[row][:, pos].sum(-1).reshape(1, 1, side, side)
        m = F.max_pool2d(m, 3, stride=1, padding=1)
        m = F.interpolate(m, size=size, mode="nearest")[0, 0]
        masks.append(m / m.max() > threshold)
    if not masks:
        return torch.ones(size, dtype=torch.bool, device=maps.device)
    return torch.stack(masks).any(0)


def self_limit(
    family: str, latent: tuple[int, int], options: P2POptions, synthetic: bool = False
) -> int:
    """Self-attention maps are replaced in layers with at most this many tokens: on SD the
    real-image (null-text) notebook's 32 x 32 at 512 px, i.e. (latent / 2)^2, and the generation
    notebook's 16 x 16, (latent / 4)^2, in synthetic mode; on SDXL its port's (W / 32)^2 =
    (latent / 4)^2."""
    if options.self_max_tokens > 0:
        return options.self_max_tokens
    h, w = latent
    divisor = 4 if family == "sdxl" or synthetic else 2
    return (h // divisor) * (w // divisor)


class PromptToPrompt(EditMethod):
    """Word-aligned edits (`p2p_prompt` -> `p2p_template`) with attention replacement and Local
    Blend on the sample's blend words; real images through null-text inversion, the backbone's
    own generations regenerated from their seed (synthetic mode)."""

    name = "p2p"
    version = "2"  # #14: the reference notebooks' controllers and null-text inversion
    needs = frozenset({"source_prompt", "target_prompt"})
    Options = P2POptions
    smoke_options = {"steps": 3, "null_text_inner_steps": 1}

    def load(self, backbone: Any) -> None:
        self.backbone = backbone

    def edit(self, request: EditRequest) -> EditResult:
        latents, extras = edit_latents(self.backbone, request, self.options)
        return EditResult(image=self.backbone.decode_latents(latents[1:2])[0], extras=extras)


@torch.no_grad()
def edit_latents(
    backbone: Any,
    request: EditRequest,
    options: P2POptions,
    probe: list | None = None,
    record: list | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Returns the final [source, target] latents; `record` gets (latents, mask) per blend."""
    from diffusers import DDIMScheduler

    from partedit_bench.engine.attention import processors

    sample, unet = request.sample, backbone.unet
    synthetic = request.synthetic
    if synthetic:  # the generation notebook: both rows from the x_T of the suite's image
        source = sample.prompt_original
        target = generation_target(sample)
    else:
        source = sample.p2p_prompt or sample.prompt_original
        target = target_prompt(sample)
    tokenizer = backbone.components["tokenizer"]
    prediction = backbone.components["scheduler"].config.prediction_type
    embeds, added = backbone.encode_prompts(["", source, target])

    def rows(idx: list[int]) -> tuple[torch.Tensor, Any]:
        return embeds[idx], None if added is None else {k: v[idx] for k, v in added.items()}

    size = backbone.latent_resolution
    h = w = size
    null_embeddings = None
    if synthetic:
        scheduler = type(backbone.components["scheduler"]).from_config(
            backbone.components["scheduler"].config
        )
        scheduler.set_timesteps(options.steps, device=backbone.device)
        generator = torch.Generator("cpu").manual_seed(sample.seed)
        x_t = torch.randn(
            (1, unet.config.in_channels, h, w),
            generator=generator,
            dtype=embeds.dtype,
            device="cpu",
        ).to(backbone.device)
        latents = (x_t * scheduler.init_noise_sigma).repeat(2, 1, 1, 1)
    else:
        x0 = backbone.encode_images([request.image])
        h, w = x0.shape[-2:]
        src_ctx, src_added = rows([0, 1])

        def predict_source(x: torch.Tensor, t: int) -> torch.Tensor:  # conditional, guidance 1
            return unet(
                x,
                t,
                encoder_hidden_states=src_ctx[1:],
                added_cond_kwargs=None
                if src_added is None
                else {k: v[1:] for k, v in src_added.items()},
            ).sample

        _, trajectory = inversion.ddim_invert(
            predict_source, x0, backbone.components["scheduler"], options.steps, prediction
        )
        scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
        scheduler.set_timesteps(options.steps, device=backbone.device)
        if options.null_text:
            null_scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
            null_scheduler.set_timesteps(options.steps, device=backbone.device)
            null_embeddings = null_text_optimization(
                backbone,
                trajectory,
                null_scheduler.timesteps,
                null_scheduler,
                rows([1]),
                rows([0]),
                options.guidance,
                options.null_text_inner_steps,
            )
        latents = trajectory[0].to(x0.dtype).repeat(2, 1, 1, 1)
    replacement = replacement_for(tokenizer, source, target)
    state = P2PState(
        # the reference's alpha has T + 1 rows: the first int(f (T + 1)) steps are replaced
        cross_steps=int(options.cross_replace * (options.steps + 1)),
        self_steps=int(options.self_replace * options.steps),
        self_max_tokens=self_limit(backbone.family, (h, w), options, synthetic),
        replacement=replacement,
        # the layers at a quarter of the latent size (16 x 16 on SD at 512 px): on SD those of
        # the down and up blocks (the notebooks' down_cross[2:4] + up_cross[:3]), on SDXL every
        # one (its port takes every map of that size, the mid block's included)
        blend_tokens=(h // 4) * (w // 4),
        blend_mid=backbone.family == "sdxl",
        probe=probe,
    )
    positions = [
        positions_of_words(tokenizer, source, sample.blend_words),
        positions_of_words(tokenizer, target, sample.blend_words),
    ]
    context, context_added = rows([0, 0, 1, 2])
    installed = {
        n.removesuffix(".processor"): P2PProcessor(n.removesuffix(".processor"), state)
        for n in unet.attn_processors
    }
    # the real-image notebook blends from step int(0.2 T), the generation notebook from the start
    blend_from = 0 if synthetic else int(options.blend_start * options.steps)
    with processors(unet, installed):
        for i, t in enumerate(scheduler.timesteps):
            state.step, state.blend_step = i, None
            if null_embeddings is not None:
                context = context.clone()
                context[0:2] = null_embeddings[i]
            inp = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            out = unet(
                inp, t, encoder_hidden_states=context, added_cond_kwargs=context_added
            ).sample
            u, c = out.chunk(2)
            latents = scheduler.step(u + options.guidance * (c - u), t, latents).prev_sample
            if state.blend_step is not None:  # the store sums every step's maps
                state.blend_sum = (
                    state.blend_step
                    if state.blend_sum is None
                    else state.blend_sum + state.blend_step
                )
            if options.local_blend and state.blend_sum is not None and i >= blend_from:
                mask = local_blend_mask(
                    state.blend_sum, positions, (h, w), options.blend_threshold
                ).to(latents.device)
                latents[1] = latents[0] + mask * (latents[1] - latents[0])
                if record is not None:
                    record.append((latents.clone(), mask))
    return latents, {
        "mode": replacement.mode,
        "source_prompt": source,
        "target_prompt": target,
        "blend_positions": positions,
        "sampling": "synthetic" if synthetic else "real",
        "inversion": "none" if synthetic else ("null-text" if options.null_text else "ddim"),
    }


METHOD = PromptToPrompt  # what `api.registry()` finds by the folder's name
