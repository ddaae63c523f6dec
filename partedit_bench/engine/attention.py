"""Attention processors that record queries or attention probabilities (and can take their
queries from another pass), installed per layer with `set_attn_processor`; never a patched
`forward`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
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
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, sequence_length = context.shape[0], context.shape[1]
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
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
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


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
