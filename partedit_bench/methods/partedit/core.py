"""PartEdit's mechanics: part-token localization from the source path's queries, the mask
(aggregation, Otsu, adaptive threshold) and its timing, the padding strategies, feature
blending and the prompt-to-prompt layer, all through attention processors. The denoising
loop that drives them is `sampling.run_partedit`.

Facts: the paper (Sections 3.3-3.4, Appendices C, D, M) and the released code (file, line and
commit in the fidelity table of README.md beside this file); every behaviour that differs
between the paper's text and the released pipeline follows the pipeline by default. Batch
rows per UNet call, with classifier-free guidance: [uncond source, uncond edit, cond source,
cond edit]. The official pipeline also runs a third, localization path; its maps
depend only on the source queries and the token's keys, so they are computed here from the
source path's queries directly (reference.py beside this file keeps the 3-path formulation
for the equivalence test and the speed comparison).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from partedit_bench.engine.attention import finish, prepare, project_out
from partedit_bench.methods.partedit.words import WordSwap

SRC, EDIT = 0, 1

#: Epsilon of the min-max normalization of the step's averaged map (released pipeline).
MINMAX_EPS = 1e-6


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Maps and masks are computed in at least float32: half precision loses the small
    attention probabilities that min-max normalization and Otsu then amplify."""
    return torch.promote_types(dtype, torch.float32)


# ---------------------------------------------------------------------------------------
# Thresholds (paper Eq. 5) and padding (Appendix D)


def otsu(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold on a `bins`-bin histogram spanning [min, max] of `values`.

    Computed in float32 on the tensor's device, as the released pipeline does (its port of
    scikit-image's `threshold_otsu`): the between-class variance of every split between
    adjacent bins, and the center of the lower class's last bin at the maximum. A constant
    input returns its value.
    """
    x = values.detach().reshape(-1).to(torch.float32)
    low, high = x.min(), x.max()
    if bool(low == high):
        return float(low)
    counts = torch.histc(x, bins, min=float(low), max=float(high))
    edges = torch.linspace(float(low), float(high), bins + 1, device=x.device)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = counts.cumsum(0)
    weight_high = counts.flip(0).cumsum(0).flip(0)
    mean_low = (counts * centers).cumsum(0) / weight_low
    mean_high = (counts * centers).flip(0).cumsum(0).flip(0) / weight_high
    between = weight_low[:-1] * weight_high[1:] * (mean_low[:-1] - mean_high[1:]) ** 2
    return float(centers[torch.argmax(between)])


def threshold_mask(
    m: torch.Tensor, strategy: str = "adaptive", omega: float = 1.5
) -> tuple[torch.Tensor, float | None]:
    """T(M) for a min-max normalized map M, and Otsu's k where the strategy uses it.

    adaptive: k = Otsu(M); values below k/2 become 0, then values at or above omega*k become
    1, the rest keep M (in this order, as the released code: with omega < 0.5 the values
    zeroed first stay 0). soft: M. binary: M >= 0.5. otsu: M >= k.
    """
    if strategy == "soft":
        return m, None
    if strategy == "binary":
        return (m >= 0.5).to(m.dtype), None
    k = otsu(m)
    if strategy == "otsu":
        return (m >= k).to(m.dtype), k
    if strategy == "adaptive":
        out = torch.where(m < k / 2, torch.zeros_like(m), m)
        return torch.where(out >= omega * k, torch.ones_like(m), out), k
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
# Maps -> mask


def _up(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    m = m.to(work_dtype(m.dtype))
    if tuple(m.shape) == tuple(size):
        return m
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def _minmax(m: torch.Tensor, low: Any = None, high: Any = None) -> torch.Tensor:
    low = m.min() if low is None else low
    high = m.max() if high is None else high
    return (m - low) / (high - low + MINMAX_EPS)


def aggregate(
    maps: dict[str, list[torch.Tensor]], size: tuple[int, int], steps_so_far: int = 1
) -> dict[str, torch.Tensor]:
    """Per part: layer maps (heads summed) bilinearly resized to `size` and averaged, then
    min-max normalized (epsilon 1e-6).

    `steps_so_far` divides the average before the normalization, as the released pipeline's
    store does (it divides the step's maps by the step count); only the epsilon's weight
    changes. With several parts (Appendix M) the maps are normalized jointly at each layer and
    the averages jointly, so their relative strengths survive. Layers are summed one at a time:
    no stack of full-resolution maps is held.
    """
    parts = list(maps)
    layers = len(maps[parts[0]])
    sums: dict[str, torch.Tensor] = {}
    for i in range(layers):
        up = [_up(maps[p][i], size) for p in parts]
        if len(parts) > 1:
            low = torch.stack([u.min() for u in up]).min()
            high = torch.stack([u.max() for u in up]).max()
            up = [_minmax(u, low, high) for u in up]
        for p, u in zip(parts, up, strict=True):
            sums[p] = u if p not in sums else sums[p] + u
    means = {p: s / layers / steps_so_far for p, s in sums.items()}
    if len(parts) == 1:
        return {parts[0]: _minmax(means[parts[0]])}
    low = torch.stack([m.min() for m in means.values()]).min()
    high = torch.stack([m.max() for m in means.values()]).max()
    return {p: _minmax(m, low, high) for p, m in means.items()}


# ---------------------------------------------------------------------------------------
# The shared state of one edit's processors


@dataclass
class EditState:
    """What the processors of one edit share during a denoising loop.

    The mask of a step is computed from that step's maps either inside the UNet's last
    attention call of the step, before that call blends (timing "official": that one layer
    blends with the current step's mask, every other layer with the previous step's), or after
    the UNet call ("lagged": every layer uses the previous step's mask). A layer called at step
    i blends while 0 < c < t_e, with c = i, or i + 1 for the call that computed the mask
    (the released pipeline's step counter has already advanced there).
    """

    paths: int = 2  # rows per CFG half: source, edit (3 with the reference's localization path)
    cfg: bool = True
    token_layers: set[str] = field(default_factory=set)
    padded_tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # part -> (77, d)
    latent_size: tuple[int, int] = (0, 0)
    mask_size: tuple[int, int] = (0, 0)
    threshold: str = "adaptive"
    omega: float = 1.5
    timing: str = "official"  # official | lagged
    t_e: int = 50
    total_calls: int = 0  # attention calls per UNet pass (every processor, self and cross)
    swap: WordSwap | None = None
    self_replace_steps: int = 0  # steps [0, n) replace the edit's self-attention maps
    self_replace_tokens: int = 0  # ... at layers with at most this many keys
    # a mask given from outside (mask_source gt, a folder, a segmenter): it exists before
    # the first step, so it blends from step 0 while the step is below t_e, at every layer
    fixed_mask: torch.Tensor | None = None
    keep_maps: bool = False
    # per step
    step: int = 0
    calls: int = 0
    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    alpha: torch.Tensor | None = None
    # the latest mask and what the run reports
    mask: torch.Tensor | None = None
    _resized: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    mask_sum: torch.Tensor | None = None
    mask_count: int = 0
    otsu_k: list[float | None] = field(default_factory=list)
    blends: list[int] = field(default_factory=list)
    step_maps: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def rows(self, path: int) -> list[int]:
        halves = 2 if self.cfg else 1
        return [h * self.paths + path for h in range(halves)]

    def cond_row(self, path: int) -> int:
        return (self.paths if self.cfg else 0) + path

    def begin_step(self, step: int) -> None:
        self.step, self.calls, self.maps = step, 0, {}
        self.alpha = None if self.swap is None else self.swap.alpha(step)
        self.blends.append(0)

    def finish_step(self) -> None:
        """The step's mask from its maps (nothing when no token layer ran)."""
        if not self.maps:
            return
        normalized = aggregate(self.maps, self.mask_size, self.step + 1)
        masks, ks = [], []
        for m in normalized.values():
            t, k = threshold_mask(m, self.threshold, self.omega)
            masks.append(t)
            ks.append(k)
        self.mask = torch.stack(masks).amax(0)
        self._resized = {}
        self.otsu_k.append(ks[0] if len(ks) == 1 else None)
        self.mask_sum = self.mask if self.mask_sum is None else self.mask_sum + self.mask
        self.mask_count += 1
        if self.keep_maps:
            self.step_maps.append(normalized)
        self.maps = {}

    def layer_mask(self, tokens: int) -> torch.Tensor | None:
        """Called once per attention call after its output: counts the call, computes the
        step's mask at the step's last call under the official timing, and returns the mask
        this call blends with, as a (tokens, 1) column at the layer's resolution, or None."""
        self.calls += 1
        counted = self.step
        if self.calls == self.total_calls and self.timing == "official":
            self.finish_step()
            counted = self.step + 1
        if self.fixed_mask is not None:
            if not counted < self.t_e:
                return None
            self.blends[-1] += 1
            return self._at_layer(self.fixed_mask, tokens)
        if self.mask is None or not 0 < counted < self.t_e:
            return None
        self.blends[-1] += 1
        return self._at_layer(self.mask, tokens)

    def _at_layer(self, mask: torch.Tensor, tokens: int) -> torch.Tensor:
        h, w = self.latent_size
        scale = int(round((h * w / tokens) ** 0.5))
        size = (h // scale, w // scale)
        if mask is not self.mask:
            return _up(mask, size).reshape(-1, 1)
        if size not in self._resized:
            self._resized[size] = _up(mask, size).reshape(-1, 1)
        return self._resized[size]

    def replace_self(self, keys: int) -> bool:
        return self.step < self.self_replace_steps and keys <= self.self_replace_tokens

    def mean_mask(self) -> torch.Tensor | None:
        if self.fixed_mask is not None:
            return self.fixed_mask
        return None if self.mask_sum is None else self.mask_sum / self.mask_count

    def blend(self, out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The edit rows of an attention output become mask * edit + (1 - mask) * source."""
        if mask is None:
            return out
        mask = mask.to(out.dtype)
        out = out.clone()
        for src, edit in zip(self.rows(SRC), self.rows(EDIT), strict=True):
            out[edit] = mask * out[edit] + (1 - mask) * out[src]
        return out

    def swap_cross(self, probs: torch.Tensor, batch: int, heads: int) -> torch.Tensor:
        """Prompt-to-prompt on (batch * heads, N, 77) probabilities: the conditional edit row
        takes the source's maps through the word-swap mapper where alpha is 1 (the released
        controller edits only the conditional half)."""
        assert self.swap is not None and self.alpha is not None
        probs = probs.view(batch, heads, *probs.shape[1:]).clone()
        src, edit = self.cond_row(SRC), self.cond_row(EDIT)
        alpha = self.alpha.to(probs.device, probs.dtype)
        mapped = probs[src] @ self.swap.mapper.to(probs.device, probs.dtype)
        probs[edit] = mapped * alpha + probs[edit] * (1 - alpha)
        return probs.view(batch * heads, *probs.shape[2:])

    def swap_self(self, probs: torch.Tensor, batch: int, heads: int) -> torch.Tensor:
        probs = probs.view(batch, heads, *probs.shape[1:]).clone()
        probs[self.cond_row(EDIT)] = probs[self.cond_row(SRC)]
        return probs.view(batch * heads, *probs.shape[2:])


# ---------------------------------------------------------------------------------------
# The processor


class PartEditProcessor:
    """Standard attention plus PartEdit: at the token layers the source path's conditional
    queries are scored against each padded part token's keys (the localization maps); every
    attention output of the edit path is blended with the source's by the mask; the edit
    path's attention maps can be replaced by the source's (prompt-to-prompt)."""

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
        prepared = prepare(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        hidden_states, context = prepared.hidden_states, prepared.context
        attention_mask, batch = prepared.attention_mask, hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        heads = attn.heads
        if self.is_cross and self.name in state.token_layers:
            row = state.cond_row(SRC)
            q_src = query[row * heads : (row + 1) * heads]
            for part, padded in state.padded_tokens.items():
                k = attn.head_to_batch_dim(attn.to_k(padded[None].to(context.dtype)))
                work = work_dtype(q_src.dtype)  # the maps' softmax in float32 on purpose
                part_probs = attn.get_attention_scores(q_src.to(work), k.to(work))[..., 1].sum(0)
                state.maps.setdefault(part, []).append(self._square(part_probs))
        swap_cross = self.is_cross and state.alpha is not None
        swap_self = not self.is_cross and state.replace_self(key.shape[1])
        if swap_cross or swap_self:  # the maps themselves are needed
            probs = attn.get_attention_scores(query, key, attention_mask)
            probs = (
                state.swap_cross(probs, batch, heads)
                if swap_cross
                else state.swap_self(probs, batch, heads)
            )
            out = torch.bmm(probs, value)
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
        out = project_out(attn, out)
        return finish(attn, state.blend(out, state.layer_mask(out.shape[1])), prepared)

    def _square(self, flat: torch.Tensor) -> torch.Tensor:
        h, w = self.state.latent_size
        scale = int(round((h * w / flat.shape[0]) ** 0.5))
        return flat.reshape(h // scale, w // scale)


def numpy_mask(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A mask -> (H, W) float array at `size` = (width, height), bilinear. (The runner stores
    it as an 8-bit PNG, truncating as the released pipeline's shown mask does.)"""
    up = _up(mask, (size[1], size[0]))
    return up.clamp(0, 1).cpu().numpy()
