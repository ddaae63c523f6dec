"""PartEdit's mechanics: part-token localization from the source path's queries, the
threshold and padding strategies, feature blending through attention processors, and the
samplers (synthetic trajectories and edit-friendly DDPM inversion of real images).

Facts: reference/partedit-paper.md (Sections 3.3-3.4, Appendices C, D, M) and
reference/official-partedit-code.md. Batch rows per UNet call, with classifier-free guidance:
[uncond source, uncond edit, cond source, cond edit] (the official pipeline also runs a third,
localization path; its maps depend only on the source queries and the token's keys, so they
are computed here from the source path's queries directly; methods/partedit/reference.py keeps
the 3-path formulation for the equivalence test and the speed comparison).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SRC, EDIT = 0, 1


# ---------------------------------------------------------------------------------------
# Thresholds (paper Eq. 5) and padding (Appendix D)


def otsu(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1] on a 256-bin histogram (as scikit-image)."""
    from skimage.filters import threshold_otsu

    array = values.detach().float().cpu().numpy().ravel()
    if array.max() <= array.min():
        return float(array.max())
    return float(threshold_otsu(array, nbins=bins))


def threshold_mask(m: torch.Tensor, strategy: str = "adaptive", omega: float = 1.5) -> torch.Tensor:
    """T(M) for a min-max normalized map M.

    adaptive: k = Otsu(M); 0 where M < k/2, 1 where M >= omega*k, M itself in between.
    soft: M. binary: M >= 0.5. otsu: M >= k.
    """
    if strategy == "soft":
        return m
    if strategy == "binary":
        return (m >= 0.5).to(m.dtype)
    k = otsu(m)
    if strategy == "otsu":
        return (m >= k).to(m.dtype)
    if strategy == "adaptive":
        out = torch.where(m < k / 2, torch.zeros_like(m), m)
        return torch.where(m >= omega * k, torch.ones_like(m), out)
    raise ValueError(f"unknown threshold strategy {strategy!r}")


def pad_token(
    embedding: torch.Tensor, strategy: str, context: torch.Tensor, length: int = 77
) -> torch.Tensor:
    """[BG, PART] -> a `length`-token sequence: positions 2.. filled with BG (default), the
    start-of-text or end-of-text embedding of `context` (the source prompt's embedding), zeros,
    or the context's own tokens at those positions."""
    embedding = embedding.to(context.dtype)
    if strategy == "bg":
        fill = embedding[0:1].expand(length - 2, -1)
    elif strategy == "sot":
        fill = context[0:1].expand(length - 2, -1)
    elif strategy == "eot":
        fill = context[-1:].expand(length - 2, -1)
    elif strategy == "zero":
        fill = torch.zeros(
            length - 2, embedding.shape[1], dtype=embedding.dtype, device=embedding.device
        )
    elif strategy == "context":
        fill = context[2:length]
    else:
        raise ValueError(f"unknown padding strategy {strategy!r}")
    return torch.cat([embedding, fill.to(embedding.device)], dim=0)


# ---------------------------------------------------------------------------------------
# Maps -> blending mask


def aggregate(
    maps: dict[str, list[torch.Tensor]], size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Per part: layer maps (heads summed) bilinearly resized to `size` and averaged, then
    min-max normalized. With several parts the maps are normalized jointly at each layer
    (Appendix M) and the averages jointly, so their relative strengths survive."""
    parts = list(maps)
    layers = len(maps[parts[0]])
    resized: dict[str, list[torch.Tensor]] = {p: [] for p in parts}
    for i in range(layers):
        per_part = [maps[p][i].float() for p in parts]
        up = [
            F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
            for m in per_part
        ]
        if len(parts) > 1:
            low = min(float(u.min()) for u in up)
            high = max(float(u.max()) for u in up)
            up = [(u - low) / (high - low + 1e-8) for u in up]
        for p, u in zip(parts, up, strict=True):
            resized[p].append(u)
    means = {p: torch.stack(resized[p]).mean(0) for p in parts}
    if len(parts) == 1:
        m = means[parts[0]]
        return {parts[0]: (m - m.min()) / (m.max() - m.min() + 1e-8)}
    low = min(float(m.min()) for m in means.values())
    high = max(float(m.max()) for m in means.values())
    return {p: (m - low) / (high - low + 1e-8) for p, m in means.items()}


# ---------------------------------------------------------------------------------------
# The processor


@dataclass
class EditState:
    """What the processors of one edit share during a denoising loop."""

    paths: int = 2  # rows per CFG half: source, edit (3 with the reference's localization path)
    cfg: bool = True
    token_layers: set[str] = field(default_factory=set)
    padded_tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # part -> (77, d)
    blend: torch.Tensor | None = None  # (H, W) latent-resolution mask for this step
    latent_size: tuple[int, int] = (0, 0)
    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # this step's
    replace_cross: torch.Tensor | None = None  # (tokens,) 1 where edit probs become source's
    record_maps: bool = True

    def rows(self, path: int) -> list[int]:
        halves = 2 if self.cfg else 1
        return [h * self.paths + path for h in range(halves)]

    def cond_row(self, path: int) -> int:
        return (self.paths if self.cfg else 0) + path


class PartEditProcessor:
    """Standard attention plus PartEdit: at the token layers the source path's conditional
    queries are scored against each padded part token's keys (the localization maps); every
    attention output of the edit path is blended with the source's by the step's mask; the
    edit path's cross-attention can be replaced by the source's (prompt-to-prompt)."""

    def __init__(self, name: str, state: EditState):
        self.name, self.state = name, state
        self.is_cross = name.endswith("attn2")

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        state = self.state
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b4, c4, h4, w4 = hidden_states.shape
            hidden_states = hidden_states.view(b4, c4, h4 * w4).transpose(1, 2)
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        heads = attn.heads
        if self.is_cross and self.name in state.token_layers and state.record_maps:
            row = state.cond_row(SRC)
            q_src = query[row * heads : (row + 1) * heads]
            for part, padded in state.padded_tokens.items():
                k = attn.head_to_batch_dim(attn.to_k(padded[None].to(context.dtype)))
                part_probs = attn.get_attention_scores(q_src, k)[..., 1].sum(0)  # heads summed
                state.maps.setdefault(part, []).append(self._square(part_probs))
        if self.is_cross and state.replace_cross is not None:
            # prompt-to-prompt needs the probabilities themselves
            probs = attn.get_attention_scores(query, key, attention_mask)
            probs = probs.view(batch, heads, *probs.shape[1:]).clone()
            keep = state.replace_cross.to(probs.dtype)
            for src, edit in zip(state.rows(SRC), state.rows(EDIT), strict=True):
                probs[edit] = probs[src] * keep + probs[edit] * (1 - keep)
            out = torch.bmm(probs.view(batch * heads, *probs.shape[2:]), value)
        else:  # the output alone: the fused kernel (self-attention is the costly part)
            shape = (batch, heads, -1, query.shape[-1])
            fused = F.scaled_dot_product_attention(
                query.view(shape),
                key.view(shape),
                value.view(shape),
                attn_mask=None
                if attention_mask is None
                else attention_mask.view(batch, heads, *attention_mask.shape[1:]),
                scale=attn.scale,
            )
            out = fused.reshape(batch * heads, *fused.shape[2:])
        out = attn.batch_to_head_dim(out)
        out = attn.to_out[1](attn.to_out[0](out))
        if state.blend is not None:
            mask = self._resized_mask(out.shape[1]).to(out.dtype)
            out = out.clone()
            for src, edit in zip(state.rows(SRC), state.rows(EDIT), strict=True):
                out[edit] = mask * out[edit] + (1 - mask) * out[src]
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b4, c4, h4, w4)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _square(self, flat: torch.Tensor) -> torch.Tensor:
        h, w = self.state.latent_size
        scale = int(round((h * w / flat.shape[0]) ** 0.5))
        return flat.reshape(h // scale, w // scale)

    def _resized_mask(self, tokens: int) -> torch.Tensor:
        h, w = self.state.latent_size
        scale = int(round((h * w / tokens) ** 0.5))
        m = self.state.blend
        assert m is not None
        small = F.interpolate(
            m[None, None].float(),
            size=(h // scale, w // scale),
            mode="bilinear",
            align_corners=False,
        )
        return small.reshape(-1, 1)


# ---------------------------------------------------------------------------------------
# Prompt-to-prompt cross-attention replacement (official default 0.4)


def replacement_columns(tokenizer: Any, source: str, edit: str) -> torch.Tensor | None:
    """1 for the token positions shared by the two prompts, 0 for the edited words' tokens;
    None when the prompts do not tokenize to aligned sequences (a word swap must keep the
    token count), in which case no replacement is done."""
    a = tokenizer(source, padding="max_length", max_length=77, truncation=True).input_ids
    b = tokenizer(edit, padding="max_length", max_length=77, truncation=True).input_ids
    length_a = a.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in a else 77
    length_b = b.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in b else 77
    if length_a != length_b:
        return None
    return torch.tensor([1.0 if x == y else 0.0 for x, y in zip(a, b, strict=True)])


def numpy_mask(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A latent-resolution mask -> (H, W) float array at `size` = (width, height)."""
    up = F.interpolate(
        mask[None, None].float(), size=(size[1], size[0]), mode="bilinear", align_corners=False
    )
    return up[0, 0].clamp(0, 1).cpu().numpy()
