"""Attention processors that record queries or attention probabilities (and can take their
queries from another pass), installed per layer with `set_attn_processor`; never a patched
`forward`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

HALF = (torch.float16, torch.bfloat16)


def _numeric_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.]", name))


def attention_layers(unet: Any, kind: str = "attn2", where: str = "all") -> list[str]:
    """Module names of the UNet's `attn1` (self) or `attn2` (cross) attention layers in
    execution order: down blocks, mid block, up blocks (`where` = all | down | mid | up)."""
    names = [n.removesuffix(".processor") for n in unet.attn_processors if f".{kind}." in n]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    names = sorted(names, key=lambda n: (order[n.split(".")[0]], _numeric_key(n)))
    if where == "all":
        return names
    prefix = {"down": "down_blocks", "mid": "mid_block", "up": "up_blocks"}[where]
    return [n for n in names if n.startswith(prefix)]


def cross_attention_layers(unet: Any, where: str = "all") -> list[str]:
    """The cross-attention (`attn2`) layers in execution order (see `attention_layers`)."""
    return attention_layers(unet, "attn2", where)


def decoder_cross_attention_layers(unet: Any, count: int = 8) -> list[str]:
    """The first `count` cross-attention layers of the decoder (SDXL: up_blocks.0.attentions.0
    transformer blocks 0-7), PartEdit's token layers."""
    return cross_attention_layers(unet, "up")[:count]


@dataclass
class Prepared:
    """An attention call's inputs after the layer's own norms (`prepare`): what `finish`
    needs to give the output the input's shape, residual and scale back."""

    hidden_states: torch.Tensor  # (B, N, C), normed
    context: torch.Tensor  # the keys' and values' input (hidden_states for self-attention)
    attention_mask: torch.Tensor | None  # as `prepare_attention_mask` returns it
    residual: torch.Tensor
    shape4: tuple[int, int, int, int] | None  # (B, C, H, W) of a 4-D input


def prepare(
    attn: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    temb: torch.Tensor | None,
) -> Prepared:
    """The first half of diffusers' `AttnProcessor.__call__` (diffusers 0.42,
    models/attention_processor.py): spatial norm, a 4-D input flattened, the mask prepared,
    group norm, the cross-attention norm. Every processor that supports any layer (the
    recording one, PartEdit's) goes through it and through `finish`."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape4 = None
    if hidden_states.ndim == 4:
        shape4 = tuple(hidden_states.shape)
        batch, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    batch_size, sequence_length = context.shape[0], context.shape[1]
    attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if encoder_hidden_states is not None and attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    return Prepared(hidden_states, context, attention_mask, residual, shape4)  # type: ignore[arg-type]


def finish(attn: Any, out: torch.Tensor, prepared: Prepared) -> torch.Tensor:
    """The second half of `AttnProcessor.__call__` after the output projection: the input's
    4-D shape, the residual and the output scale back."""
    if prepared.shape4 is not None:
        out = out.transpose(-1, -2).reshape(*prepared.shape4)
    if attn.residual_connection:
        out = out + prepared.residual
    return out / attn.rescale_output_factor


def project_out(attn: Any, out: torch.Tensor) -> torch.Tensor:
    """Head-merged attention output (B*heads, N, d) through the layer's output projection and
    dropout: (B, N, C)."""
    return attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(out)))


def plain_qkv(
    attn: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    who: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the processors that rewrite attention maps (p2p, masactrl, the PartEdit 3-path
    reference): the layer checked by `require_plain_attention` (so none of `prepare`'s steps
    applies), then the head-split query, key and value, (B*heads, N, d)."""
    require_plain_attention(attn, hidden_states, attention_mask, who)
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    return (
        attn.head_to_batch_dim(attn.to_q(hidden_states)),
        attn.head_to_batch_dim(attn.to_k(context)),
        attn.head_to_batch_dim(attn.to_v(context)),
    )


class RecordingAttnProcessor:
    """Standard attention (explicit probabilities, as diffusers' AttnProcessor) that can
    record the head-split queries and/or the attention probabilities of each call into
    `store[name]`, and can take its queries from `query_source[name]` (the queries another pass
    recorded at the same layer) instead of computing them.

    Args:
        name: the layer's module name.
        store: name -> list of recorded tensors, one per call.
        record: subset of {"queries", "probs"}.
        query_source: name -> list of queries to use, consumed in call order.
        keep_grad: keep the autograd graph of recorded tensors (coupled token training).
    """

    def __init__(
        self,
        name: str,
        store: dict[str, list[torch.Tensor]],
        record: tuple[str, ...] = (),
        query_source: dict[str, list[torch.Tensor]] | None = None,
        keep_grad: bool = False,
    ):
        self.name, self.store, self.record = name, store, record
        self.query_source, self.keep_grad = query_source, keep_grad
        self.calls = 0

    def _keep(self, kind: str, tensor: torch.Tensor) -> None:
        if kind in self.record:
            self.store.setdefault(f"{self.name}:{kind}", []).append(
                tensor if self.keep_grad else tensor.detach()
            )

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        prepared = prepare(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        hidden_states, context = prepared.hidden_states, prepared.context
        attention_mask = prepared.attention_mask
        if self.query_source is not None:
            query = self.query_source[self.name][self.calls]
        else:
            query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        self.calls += 1
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        if "probs" in self.record and query.dtype in HALF:
            # recorded maps are computed in float32 on purpose: a half-precision softmax keeps
            # 3 significant digits, and the maps' normalization and thresholds amplify the
            # small probabilities it rounds (the layer's output uses them rounded back)
            probs = attn.get_attention_scores(query.float(), key.float(), attention_mask)
            self._keep("queries", query)
            self._keep("probs", probs)
            probs = probs.to(query.dtype)
        else:
            probs = attn.get_attention_scores(query, key, attention_mask)
            self._keep("queries", query)
            self._keep("probs", probs)
        return finish(attn, project_out(attn, torch.bmm(probs, value)), prepared)


def require_plain_attention(
    attn: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, who: str
) -> None:
    """Processors that rewrite attention maps (p2p, masactrl, the PartEdit 3-path reference)
    implement the transformer-block attention of SD / SDXL UNets only. A layer that also uses
    a spatial or group norm, a residual, a cross-attention norm, 4-D input, an attention mask
    or an output rescale is refused here, instead of being computed without it."""
    unsupported = [
        name
        for name, used in (
            ("spatial_norm", attn.spatial_norm is not None),
            ("group_norm", attn.group_norm is not None),
            ("residual_connection", bool(attn.residual_connection)),
            ("norm_cross", bool(attn.norm_cross)),
            ("4-D input", hidden_states.ndim == 4),
            ("an attention mask", attention_mask is not None),
            ("rescale_output_factor", attn.rescale_output_factor != 1.0),
        )
        if used
    ]
    if unsupported:
        raise NotImplementedError(
            f"{who} implements the attention of SD / SDXL transformer blocks; this layer uses "
            f"{', '.join(unsupported)}"
        )


@contextlib.contextmanager
def processors(unet: Any, replacements: dict[str, Any]) -> Iterator[None]:
    """Installs processors for some layers (module names) and restores all afterwards."""
    original = dict(unet.attn_processors)
    unknown = [n for n in replacements if f"{n}.processor" not in original]
    if unknown:
        raise ValueError(f"no attention layer named {unknown[0]}")
    merged = {k: replacements.get(k.removesuffix(".processor"), v) for k, v in original.items()}
    unet.set_attn_processor(merged)
    try:
        yield
    finally:
        unet.set_attn_processor(original)


def module(unet: Any, name: str) -> Any:
    return unet.get_submodule(name)


def probs_against(attn: Any, queries: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of head-split `queries` (B*heads, N, hd) against the keys of
    `embedding` (T, d): (B*heads, N, T), as the layer itself would compute them."""
    context = embedding[None].to(attn.to_k.weight.dtype)
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key = attn.head_to_batch_dim(attn.to_k(context))  # (heads, T, hd)
    repeat = queries.shape[0] // key.shape[0]
    # the keys in the layer's dtype, the scores and softmax in at least float32 on purpose
    # (these maps are normalized and thresholded: see RecordingAttnProcessor)
    work = torch.promote_types(queries.dtype, torch.float32)
    return attn.get_attention_scores(queries.to(work), key.repeat(repeat, 1, 1).to(work))
