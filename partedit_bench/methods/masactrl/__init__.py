"""`masactrl`: mutual self-attention control (Cao et al., ICCV 2023)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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
from partedit_bench.engine.attention import require_plain_attention

SD_BLOCKS = 16  # the reference counts 16 SD transformer blocks: 6 down, 1 mid, 9 up


@dataclass
class MasaCtrlOptions:
    steps: int = 50
    guidance: float = 7.5
    start_step: int = 4
    start_layer: int = 10  # of 16 SD blocks; mapped proportionally on other UNets
    #: real images: the resize to the backbone's size. `nearest`: the reference's
    #: `F.interpolate(image, (512, 512))` (torch's default mode) on the [-1, 1] pixels;
    #: `bicubic`: PIL's bicubic, as most other methods here
    resize: Literal["nearest", "bicubic"] = "nearest"

    def __post_init__(self) -> None:
        check_range("masactrl", "steps", self.steps, 1)
        check_range("masactrl", "guidance", self.guidance, 0)
        check_range("masactrl", "start_step", self.start_step, 0, self.steps)
        check_range("masactrl", "start_layer", self.start_layer, 0, 16)


def self_attention_layers(unet: Any) -> list[str]:
    """`attn1` module names in execution order (down, mid, up)."""
    from partedit_bench.engine.attention import attention_layers

    return attention_layers(unet, "attn1")


def controlled_layers(unet: Any, start_layer: int) -> list[str]:
    """The self-attention layers under control: from `start_layer` of the reference's 16 SD
    blocks, mapped to this UNet as the same fraction of its blocks in execution order
    (SD 1.x/2.x: exactly blocks 10..15; SDXL's 70 blocks: from 44)."""
    layers = self_attention_layers(unet)
    first = (
        round(start_layer / SD_BLOCKS * len(layers)) if len(layers) != SD_BLOCKS else start_layer
    )
    return layers[first:]


@dataclass
class ControlState:
    step: int = 0
    start_step: int = 4
    layers: set[str] = field(default_factory=set)
    probe: list[dict[str, Any]] | None = None


class MutualSelfAttentionProcessor:
    """Self-attention where, once control is active, the target rows' queries attend to the
    source rows' keys and values (each CFG half to its own source row); batch rows are
    [uncond source, uncond target, cond source, cond target]."""

    def __init__(self, name: str, state: ControlState):
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
        require_plain_attention(attn, hidden_states, attention_mask, "masactrl")
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        heads = attn.heads
        q = attn.to_q(hidden_states).view(batch, -1, heads, attn.to_q.out_features // heads)
        k = attn.to_k(context).view(batch, -1, heads, q.shape[-1])
        v = attn.to_v(context).view(batch, -1, heads, q.shape[-1])
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        active = (
            encoder_hidden_states is None
            and self.name in self.state.layers
            and self.state.step >= self.state.start_step
        )
        if active:
            k, v = k.clone(), v.clone()
            k[1::2], v[1::2] = k[0::2], v[0::2]  # target rows take their source row's K, V
            if self.state.probe is not None:
                self.state.probe.append({"name": self.name, "k": k, "v": v})
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, heads * q.shape[-1]).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))  # (`require_plain_attention`: no residual)


def encode_source(backbone: Any, image: Any, resize: str) -> torch.Tensor:
    """The real image's latents: `playground_real.ipynb`'s `load_image` (RGB / 127.5 - 1, then
    `F.interpolate` to the model's size with torch's default nearest mode) for `nearest`."""
    if resize == "bicubic":
        return backbone.encode_images([image])
    import numpy as np

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 127.5 - 1.0)
    size = (backbone.resolution, backbone.resolution)
    return backbone.encode_pixels(F.interpolate(pixels.permute(2, 0, 1)[None], size))


class MasaCtrl(EditMethod):
    """Real images: DDIM inversion with an empty prompt, then the batch ["", target] with the
    target's self-attention reading the source's keys and values."""

    name = "masactrl"
    version = "2"  # #31: the reference's nearest resize of real images
    needs = frozenset({"target_prompt"})
    Options = MasaCtrlOptions
    step_options = ("start_step",)
    smoke_options = {"steps": 3, "start_step": 1, "start_layer": 1}

    def load(self, backbone: Any) -> None:
        self.backbone = backbone

    def edit(self, request: EditRequest) -> EditResult:
        sample = request.sample
        if request.synthetic:  # the synthesis setting: regenerate the suite image and edit it
            target = generation_target(sample)
            latents, extras = edit_latents(
                self.backbone,
                request.image,
                target,
                self.options,
                synthetic_from=(sample.prompt_original, sample.seed),
            )
        else:
            latents, extras = edit_latents(
                self.backbone, request.image, target_prompt(sample), self.options
            )
        return EditResult(image=self.backbone.decode_latents(latents[1:2])[0], extras=extras)


@torch.no_grad()
def edit_latents(
    backbone: Any,
    image: Any,
    target: str,
    options: MasaCtrlOptions,
    probe: list | None = None,
    synthetic_from: tuple[str, int] | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Returns the final [source, target] latents.

    Real images (default): DDIM inversion with an empty prompt, the source branch "". With
    `synthetic_from` = (source prompt, seed): the reference's synthesis, both branches from the
    seed's x_T with [source prompt, target] and the DDIM sampler its playground builds (no
    clipping; `steps_offset` 1, which the pipeline's constructor sets)."""
    from diffusers import DDIMScheduler

    from partedit_bench.engine.attention import processors

    unet = backbone.unet
    prediction = backbone.components["scheduler"].config.prediction_type
    source = "" if synthetic_from is None else synthetic_from[0]
    embeds, added = backbone.encode_prompts(["", source, target])

    def rows(indices: list[int]) -> tuple[torch.Tensor, Any]:
        return embeds[indices], None if added is None else {k: v[indices] for k, v in added.items()}

    if synthetic_from is None:
        x0 = encode_source(backbone, image, options.resize)
        empty, empty_added = rows([0])
        _, x_traj = inversion.ddim_invert(
            lambda x, t: (
                unet(x, t, encoder_hidden_states=empty, added_cond_kwargs=empty_added).sample
            ),
            x0,
            backbone.components["scheduler"],
            options.steps,
            prediction,
        )
        scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
        latents = x_traj[0].to(x0.dtype).repeat(2, 1, 1, 1)
    else:
        # the playground's DDIMScheduler(SD betas, clip_sample=False, set_alpha_to_one=False),
        # which diffusers' pipeline constructor gives steps_offset=1
        scheduler = DDIMScheduler.from_config(
            backbone.components["scheduler"].config,
            steps_offset=1,
            clip_sample=False,
            set_alpha_to_one=False,
        )
        size = backbone.latent_resolution
        generator = torch.Generator("cpu").manual_seed(synthetic_from[1])
        x_t = torch.randn(
            (1, unet.config.in_channels, size, size),
            generator=generator,
            dtype=embeds.dtype,
            device="cpu",
        )
        latents = x_t.to(backbone.device).repeat(2, 1, 1, 1)
    scheduler.set_timesteps(options.steps, device=backbone.device)
    layers = controlled_layers(unet, options.start_layer)
    state = ControlState(start_step=options.start_step, layers=set(layers), probe=probe)
    # uncond src, uncond tgt, cond src (the empty prompt for real images), cond tgt
    context, context_added = rows([0, 0, 1, 2])
    installed = {n: MutualSelfAttentionProcessor(n, state) for n in self_attention_layers(unet)}
    with processors(unet, installed):
        for i, t in enumerate(scheduler.timesteps):
            state.step = i
            out = unet(
                torch.cat([latents, latents]),
                t,
                encoder_hidden_states=context,
                added_cond_kwargs=context_added,
            ).sample
            u, c = out.chunk(2)
            latents = scheduler.step(u + options.guidance * (c - u), t, latents).prev_sample
    return latents, {
        "sampling": "real" if synthetic_from is None else "synthetic",
        "source_prompt": source,
        "target_prompt": target,
        "controlled_layers": len(layers),
        "first_controlled_layer": layers[0] if layers else None,
    }


METHOD = MasaCtrl  # what `api.registry()` finds by the folder's name
