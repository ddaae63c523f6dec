"""`p2p`: Prompt-to-Prompt (Hertz et al., ICLR 2023) through attention processors."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from partedit_bench import inversion
from partedit_bench.method_api import EditMethod, EditRequest, EditResult

SRC_ROWS, TGT_ROWS = (0, 2), (1, 3)  # batch: [uncond src, uncond tgt, cond src, cond tgt]


@dataclass
class P2POptions:
    steps: int = 50
    guidance: float = 7.5
    cross_replace: float = 0.4
    self_replace: float = 0.4
    self_max_tokens: int = 256  # self-attention maps replaced in layers of <= 16 x 16 tokens
    local_blend: bool = True
    blend_threshold: float = 0.3
    blend_start: float = 0.2  # the real-image (null-text) version starts blending at 20%
    null_text: bool = False  # null-text inversion (Mokady et al., CVPR 2023) instead of DDIM
    null_text_inner_steps: int = 10


def token_mapper(tokenizer: Any, source: str, target: str) -> torch.Tensor:
    """For each target token position the source position whose map it takes (-1: keeps its
    own). Equal token counts: a word swap (Replace), position to position; otherwise the
    aligned equal runs (Refine)."""
    a = tokenizer(source, padding="max_length", max_length=77, truncation=True).input_ids
    b = tokenizer(target, padding="max_length", max_length=77, truncation=True).input_ids
    eos = tokenizer.eos_token_id
    la, lb = a.index(eos), b.index(eos)
    if la == lb:
        return torch.arange(77)
    mapper = torch.full((77,), -1, dtype=torch.long)
    for block in difflib.SequenceMatcher(a=a[:la], b=b[:lb], autojunk=False).get_matching_blocks():
        for k in range(block.size):
            mapper[block.b + k] = block.a + k
    mapper[lb:] = torch.arange(la, la + 77 - lb).clamp(max=76)  # end-of-text and padding
    return mapper


def word_positions(tokenizer: Any, prompt: str, words: list[str]) -> list[int]:
    ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    out = []
    for word in words:
        piece = tokenizer(word, add_special_tokens=False).input_ids
        for start in range(1, 77 - len(piece) + 1):
            if ids[start : start + len(piece)] == piece:
                out.extend(range(start, start + len(piece)))
    return sorted(set(out))


@dataclass
class P2PState:
    step: int = 0
    cross_steps: int = 0
    self_steps: int = 0
    self_max_tokens: int = 256
    mapper: torch.Tensor | None = None
    blend_tokens: int = 0  # the map size Local Blend reads (latent / 4, 16 x 16 on SD 512 px)
    blend_maps: list[torch.Tensor] = field(default_factory=list)
    probe: list[dict[str, Any]] | None = None


class P2PProcessor:
    """Explicit attention; replaces the target rows' cross-attention maps (through the token
    mapper) during the first cross steps and their self-attention maps in small layers during
    the first self steps; stores the conditional cross maps Local Blend reads."""

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
        state, heads, batch = self.state, attn.heads, hidden_states.shape[0]
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)
        probs = probs.view(batch, heads, *probs.shape[1:])
        tokens = probs.shape[2]
        replace_cross = cross and state.step < state.cross_steps and state.mapper is not None
        replace_self = (
            not cross and state.step < state.self_steps and tokens <= state.self_max_tokens
        )
        if replace_cross or replace_self:
            probs = probs.clone()
            for src, tgt in zip(SRC_ROWS, TGT_ROWS, strict=True):
                if replace_self:
                    probs[tgt] = probs[src]
                else:
                    assert state.mapper is not None
                    keep = state.mapper >= 0
                    probs[tgt][..., keep] = probs[src][..., state.mapper[keep]]
        if cross and state.probe is not None:
            state.probe.append(
                {
                    "step": state.step,
                    "name": self.name,
                    "src": probs[2].clone(),
                    "tgt": probs[3].clone(),
                }
            )
        if cross and tokens == state.blend_tokens:
            state.blend_maps.append(probs[[2, 3]].mean(1))  # (2, N, 77): cond src, cond tgt
        out = torch.bmm(probs.reshape(batch * heads, *probs.shape[2:]), value)
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(out)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def local_blend_mask(
    maps: list[torch.Tensor], positions: list[list[int]], size: tuple[int, int], threshold: float
) -> torch.Tensor:
    """Local Blend: the blend words' maps (source and target), averaged over the stored layers,
    3x3 max-pooled, upsampled, normalized by their max, thresholded, united."""
    stacked = torch.stack(maps).mean(0)  # (2, N, 77)
    side = int(round(stacked.shape[1] ** 0.5))
    masks = []
    for row, pos in enumerate(positions):
        if not pos:
            continue
        m = stacked[row][:, pos].sum(-1).reshape(1, 1, side, side).float()
        m = F.max_pool2d(m, 3, stride=1, padding=1)
        m = F.interpolate(m, size=size, mode="nearest")[0, 0]
        masks.append(m / m.max().clamp(min=1e-8) > threshold)
    if not masks:
        return torch.ones(size, dtype=torch.bool)
    return torch.stack(masks).any(0)


def null_text_optimization(
    backbone: Any,
    trajectory: list[torch.Tensor],
    timesteps: Any,
    scheduler: Any,
    cond: tuple[torch.Tensor, Any],
    uncond: tuple[torch.Tensor, Any],
    guidance: float,
    inner_steps: int,
) -> list[torch.Tensor]:
    """Per step, optimizes the unconditional embedding so that the guided DDIM step from the
    current latent lands on the inverted trajectory (Adam, lr 1e-2 (1 - i/100), early stop at
    loss < 1e-5 + 2e-5 i); returns one unconditional embedding per step."""
    unet = backbone.unet
    embedding = uncond[0].detach().clone()
    latent = trajectory[0].to(embedding.dtype)
    out: list[torch.Tensor] = []
    for i, t in enumerate(timesteps):
        with torch.no_grad():
            cond_out = unet(
                latent, t, encoder_hidden_states=cond[0], added_cond_kwargs=cond[1]
            ).sample
        embedding = embedding.detach().requires_grad_(True)
        optimizer = torch.optim.Adam([embedding], lr=1e-2 * (1 - i / 100))
        target = trajectory[i + 1].to(latent.dtype)
        for _ in range(inner_steps):
            with torch.enable_grad():
                uncond_out = unet(
                    latent, t, encoder_hidden_states=embedding, added_cond_kwargs=uncond[1]
                ).sample
                guided = uncond_out + guidance * (cond_out - uncond_out)
                step = scheduler.step(guided, t, latent).prev_sample
                loss = F.mse_loss(step, target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if loss.item() < 1e-5 + i * 2e-5:
                break
        embedding = embedding.detach()
        out.append(embedding)
        with torch.no_grad():
            uncond_out = unet(
                latent, t, encoder_hidden_states=embedding, added_cond_kwargs=uncond[1]
            ).sample
            latent = scheduler.step(
                uncond_out + guidance * (cond_out - uncond_out), t, latent
            ).prev_sample
    return out


class PromptToPrompt(EditMethod):
    """Word-aligned edits (`p2p_prompt` -> `p2p_template`) with attention replacement and Local
    Blend on the sample's blend words; real images through DDIM inversion."""

    name = "p2p"
    needs = frozenset({"source_prompt", "target_prompt"})
    Options = P2POptions

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

    from partedit_bench.attention import processors

    sample, unet = request.sample, backbone.unet
    source = sample.p2p_prompt or sample.prompt_original
    target = sample.p2p_template or sample.prompt_changed
    tokenizer = backbone.components["tokenizer"]
    prediction = backbone.components["scheduler"].config.prediction_type
    embeds, added = backbone.encode_prompts(["", source, target])

    def rows(idx: list[int]) -> tuple[torch.Tensor, Any]:
        return embeds[idx], None if added is None else {k: v[idx] for k, v in added.items()}

    x0 = backbone.encode_images([request.image])
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
    h, w = x0.shape[-2:]
    state = P2PState(
        cross_steps=int(options.cross_replace * options.steps),
        self_steps=int(options.self_replace * options.steps),
        self_max_tokens=options.self_max_tokens,
        mapper=token_mapper(tokenizer, source, target),
        blend_tokens=(h // 4) * (w // 4),
        probe=probe,
    )
    positions = [
        word_positions(tokenizer, source, sample.blend_words),
        word_positions(tokenizer, target, sample.blend_words),
    ]
    context, context_added = rows([0, 0, 1, 2])
    null_embeddings = None
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
    installed = {
        n.removesuffix(".processor"): P2PProcessor(n.removesuffix(".processor"), state)
        for n in unet.attn_processors
    }
    with processors(unet, installed):
        for i, t in enumerate(scheduler.timesteps):
            state.step, state.blend_maps = i, []
            if null_embeddings is not None:
                context = context.clone()
                context[0:2] = null_embeddings[i]
            out = unet(
                torch.cat([latents, latents]),
                t,
                encoder_hidden_states=context,
                added_cond_kwargs=context_added,
            ).sample
            u, c = out.chunk(2)
            latents = scheduler.step(u + options.guidance * (c - u), t, latents).prev_sample
            if (
                options.local_blend
                and state.blend_maps
                and i >= options.blend_start * options.steps
            ):
                mask = local_blend_mask(
                    state.blend_maps, positions, (h, w), options.blend_threshold
                ).to(latents.device)
                latents[1] = latents[0] + mask * (latents[1] - latents[0])
                if record is not None:
                    record.append((latents.clone(), mask))
    mode = "replace" if bool((state.mapper == torch.arange(77)).all()) else "refine"
    return latents, {
        "mode": mode,
        "source_prompt": source,
        "target_prompt": target,
        "blend_positions": positions,
        "inversion": "null-text" if options.null_text else "ddim",
    }
