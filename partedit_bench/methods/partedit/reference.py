"""The official 3-path formulation, kept as a reference: one batch of source, edit and
localization paths ([u_src, u_edit, u_loc, c_src, c_edit, c_loc]); the localization path's
conditional embedding is the padded part token, its latents are reset to the source's after
every step, and in every attention layer its queries are replaced by the source path's. Its
token-layer probabilities (conditional half, heads summed) are the maps. Used by the
equivalence test and benchmarks/partedit_speed.py; the method itself runs 2 paths."""

from __future__ import annotations

from typing import Any

import torch

from partedit_bench.engine.attention import project_out, require_plain_attention
from partedit_bench.engine.backbones import added_conditioning
from partedit_bench.methods.partedit import core

LOC = 2


class ReferenceProcessor:
    """Plain attention for the 3-path batch with the localization path's queries replaced by
    the source's, maps read from the localization path, and the edit path blended."""

    def __init__(self, name: str, state: core.EditState):
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
        require_plain_attention(
            attn, hidden_states, attention_mask, "the PartEdit 3-path reference"
        )
        state, heads = self.state, attn.heads
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.to_q(hidden_states).clone()
        for src, loc in zip(state.rows(core.SRC), state.rows(LOC), strict=True):
            query[loc] = query[src]
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)
        is_cross = encoder_hidden_states is not None
        if is_cross and self.name in state.token_layers:
            row = state.cond_row(LOC)
            part_map = probs[row * heads : (row + 1) * heads, :, 1].sum(0)
            h, w = state.latent_size
            scale = int(round((h * w / part_map.shape[0]) ** 0.5))
            part = next(iter(state.padded_tokens))
            state.maps.setdefault(part, []).append(part_map.reshape(h // scale, w // scale))
        if is_cross and state.alpha is not None:
            probs = state.swap_cross(probs, batch, heads)
        elif not is_cross and state.replace_self(key.shape[1]):
            probs = state.swap_self(probs, batch, heads)
        out = project_out(attn, torch.bmm(probs, value))
        return state.blend(out, state.layer_mask(out.shape[1]))


def reference_setup(
    backbone: Any, state: core.EditState, rows: dict[str, Any], padded: dict[str, torch.Tensor]
) -> tuple[Any, Any, dict[str, Any]]:
    """Context, added conditioning and processors of the 3-path batch (one part)."""
    if len(padded) != 1:
        raise ValueError("the 3-path reference edits one part")
    state.padded_tokens = padded
    token = next(iter(padded.values()))[None].to(rows["c_src"].dtype)
    context = torch.cat(
        [rows["u_src"], rows["u_edit"], rows["u_src"], rows["c_src"], rows["c_edit"], token]
    )
    added = None
    if backbone.family == "sdxl":
        added = added_conditioning(
            backbone,
            [
                rows["pu_src"],
                rows["pu_edit"],
                rows["pu_src"],
                rows["p_src"],
                rows["p_edit"],
                rows["p_src"],
            ],
        )
    installed = {
        n.removesuffix(".processor"): ReferenceProcessor(n.removesuffix(".processor"), state)
        for n in backbone.unet.attn_processors
    }
    return context, added, installed
