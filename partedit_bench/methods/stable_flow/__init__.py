"""`stable_flow`: Stable Flow (Avrahami et al., CVPR 2025), training-free editing in FLUX by
attention injection in its "vital layers": the source and the edit are denoised as one batch,
and in the vital blocks every edit row attends with the source row's image keys and values.
Real images go through the paper's inversion (latent nudging, then inverse Euler steps).

See README.md beside this file for the reference, the defaults and the fidelity table."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from partedit_bench.api import EditMethod, EditRequest, EditResult, check_range, target_prompt
from partedit_bench.engine.flux import latent_image_ids, pack_latents, unpack_latents
from partedit_bench.errors import UserError

#: run_stable_flow.py's vital layers of FLUX.1-dev, as indices over all 57 blocks (19
#: double-stream, then 38 single-stream): MULTIMODAL_VITAL_LAYERS and
#: SINGLE_MODAL_VITAL_LAYERS + 19
OFFICIAL_VITAL = (0, 1, 17, 18, 25, 28, 53, 54, 56)
FLUX_BLOCKS = (19, 38)


@dataclass
class StableFlowOptions:
    steps: int = 15  # generation (run_stable_flow.py, infer_and_save)
    guidance: float = 3.5  # generation: every row's embedded guidance
    inversion_steps: int = 50  # real images (invert_and_save): inversion and edit
    edit_guidance: float = 3.0  # real images: the edit row's guidance (the source row's is 1)
    nudging: float = 1.15  # real images: the encoded latent is scaled by this (latent nudging)
    #: `auto` (the official nine on FLUX.1's 57 blocks, the same relative depths on others),
    #: `none`, or block indices over all blocks (double-stream first), e.g. `0,1,17,18`
    vital_layers: str = "auto"
    #: real images: which inversion latent replaces the source row after edit step i:
    #: `official` = the released code's `inverted_latent_list[-i]`, `aligned` = the one of
    #: the noise level the row has reached
    source_path: Literal["official", "aligned"] = "official"
    max_sequence_length: int = 512  # T5 tokens (run_stable_flow.py)
    mode: Literal["auto", "synthetic", "real"] = "auto"

    def __post_init__(self) -> None:
        check_range("stable_flow", "steps", self.steps, 1)
        check_range("stable_flow", "inversion_steps", self.inversion_steps, 2)
        check_range("stable_flow", "guidance", self.guidance, 0)
        check_range("stable_flow", "edit_guidance", self.edit_guidance, 0)
        check_range("stable_flow", "nudging", self.nudging, 0)
        check_range("stable_flow", "max_sequence_length", self.max_sequence_length, 1, 512)


def vital_blocks(spec: str, n_double: int, n_single: int) -> list[int]:
    """The vital layers as indices over all blocks (double-stream first).

    Raises:
        UserError: a malformed list or an index the transformer does not have.
    """
    total = n_double + n_single
    if spec == "none":
        return []
    if spec == "auto":
        if (n_double, n_single) == FLUX_BLOCKS:
            return list(OFFICIAL_VITAL)
        last = sum(FLUX_BLOCKS) - 1
        return sorted({round(i * (total - 1) / last) for i in OFFICIAL_VITAL})
    try:
        chosen = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError:
        raise UserError(
            f"option stable_flow.vital_layers={spec!r} must be auto, none or block indices "
            "like 0,1,17,18"
        ) from None
    outside = [i for i in chosen if not 0 <= i < total]
    if outside:
        raise UserError(
            f"option stable_flow.vital_layers: block {outside[0]} is outside this transformer's "
            f"0..{total - 1} ({n_double} double-stream, {n_single} single-stream)"
        )
    return chosen


class VitalInjection:
    """Wraps a FLUX attention processor: while `state.active`, the rows after the first attend
    with the first row's image-token keys and values (StableFlow's K/V replacement).

    In a double-stream block the image tokens are the whole of `to_k`/`to_v`'s input (the text
    has its own projections); in a single-stream block the input is text then image, so the
    replaced tokens start after `state.text_tokens`. The replacement happens on the
    projections' outputs, before the key norm and RoPE, as in the released code; the attention
    itself is the wrapped processor's."""

    def __init__(self, inner: Any, state: InjectionState, single: bool):
        self.inner, self.state, self.single = inner, state, single

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        with contextlib.ExitStack() as stack:
            if self.state.active:
                if getattr(attn, "fused_projections", False):
                    raise UserError("stable_flow: fused QKV projections are not supported")
                start = self.state.text_tokens if self.single else 0
                hook = functools.partial(copy_source_rows, start=start)
                for projection in (attn.to_k, attn.to_v):
                    stack.callback(projection.register_forward_hook(hook).remove)
            return self.inner(
                attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb
            )


def copy_source_rows(module: Any, args: Any, output: torch.Tensor, start: int) -> torch.Tensor:
    """A projection's output with the tokens from `start` on of rows 1.. set to row 0's."""
    output = output.clone()
    output[1:, start:] = output[:1, start:]
    return output


@dataclass
class InjectionState:
    active: bool = False
    text_tokens: int = 0


@contextlib.contextmanager
def vital_injection(transformer: Any, blocks: list[int]) -> Iterator[InjectionState]:
    """Installs `VitalInjection` on the attention of each vital block for the duration."""
    state = InjectionState()
    doubles = list(transformer.transformer_blocks)
    singles = list(transformer.single_transformer_blocks)
    saved = []
    for index in blocks:
        single = index >= len(doubles)
        block = singles[index - len(doubles)] if single else doubles[index]
        saved.append((block.attn, block.attn.processor))
        block.attn.set_processor(VitalInjection(block.attn.processor, state, single))
    try:
        yield state
    finally:
        for attn, processor in saved:
            attn.set_processor(processor)


class StableFlow(EditMethod):
    """Generated sources: both rows from the sample's x_T (FluxPipeline's draw from its seed,
    so the source row is the backbone's own generation of the sample). Real images: the
    source prompt inverts the nudged latent; the source row follows the inversion's
    latents."""

    name = "stable_flow"
    needs = frozenset({"source_prompt", "target_prompt"})
    families = frozenset({"flux"})
    Options = StableFlowOptions
    step_options = ("inversion_steps",)  # (`edit --steps`: the real-image steps too)
    smoke_options = {"steps": 2, "inversion_steps": 2}

    def load(self, backbone: Any) -> None:
        from diffusers import FluxPipeline

        transformer = backbone.components["transformer"]
        n_double = len(transformer.transformer_blocks)
        n_single = len(transformer.single_transformer_blocks)
        self.blocks = vital_blocks(self.options.vital_layers, n_double, n_single)
        self.backbone, self.pipe = backbone, backbone.pipeline(FluxPipeline)

    def edit(self, request: EditRequest) -> EditResult:
        options, sample = self.options, request.sample
        synthetic = options.mode == "synthetic" or (options.mode == "auto" and request.synthetic)
        prompts = [sample.prompt_original, target_prompt(sample)]
        with vital_injection(self.backbone.components["transformer"], self.blocks) as state:
            if synthetic:
                latents = stable_flow_generate(
                    self.pipe, self.backbone, prompts, sample.seed, options, state
                )
            else:
                latents = stable_flow_real(
                    self.pipe, self.backbone, prompts, request.image, options, state
                )
        image = decode(self.pipe, self.backbone, latents[1:2])[0]
        extras = {
            "sampling": "synthetic" if synthetic else "real",
            "vital_layers": self.blocks,
            "steps": options.steps if synthetic else options.inversion_steps,
        }
        return EditResult(image=image, extras=extras)


# ---------------------------------------------------------------------------------------
# The sampler: FLUX's flow-matching Euler steps with the source and the edit as one batch.


@dataclass
class Conditioning:
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    text_ids: torch.Tensor
    image_ids: torch.Tensor


def encode_prompts(
    pipe: Any, backbone: Any, prompts: list[str], options: StableFlowOptions
) -> tuple:
    embeds, pooled, text_ids = pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        device=backbone.device,
        num_images_per_prompt=1,
        max_sequence_length=options.max_sequence_length,
    )
    return embeds, pooled, text_ids


def schedule(pipe: Any, backbone: Any, steps: int, image_tokens: int) -> tuple[Any, Any]:
    """FluxPipeline's timesteps and sigmas for `steps` (its linear sigmas, shifted by the
    image-size dependent mu)."""
    import copy

    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = copy.deepcopy(pipe.scheduler)
    config = scheduler.config
    mu = calculate_shift(
        image_tokens,
        config.get("base_image_seq_len", 256),
        config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5),
        config.get("max_shift", 1.15),
    )
    sigmas = np.linspace(1.0, 1 / steps, steps)
    scheduler.set_timesteps(sigmas=sigmas, device=backbone.device, mu=mu)
    return scheduler.timesteps, scheduler.sigmas


def velocity(
    pipe: Any,
    latents: torch.Tensor,
    t: torch.Tensor,
    guidance: list[float],
    cond: Conditioning,
    rows: slice = slice(None),
) -> torch.Tensor:
    """The transformer's velocity for a batch, each row with its own embedded guidance."""
    transformer = pipe.transformer
    g = None
    if transformer.config.guidance_embeds:
        g = torch.tensor(guidance, device=latents.device, dtype=torch.float32)
    timestep = t.expand(latents.shape[0]).to(latents.dtype)
    return transformer(
        hidden_states=latents,
        timestep=timestep / 1000,
        guidance=g,
        pooled_projections=cond.pooled[rows],
        encoder_hidden_states=cond.prompt_embeds[rows],
        txt_ids=cond.text_ids,
        img_ids=cond.image_ids,
        return_dict=False,
    )[0]


def euler(sample: torch.Tensor, v: torch.Tensor, sigma_from: Any, sigma_to: Any) -> torch.Tensor:
    """x(sigma_to) = x(sigma_from) + (sigma_to - sigma_from) v with the sample in float32 and
    the result in the velocity's dtype, the operations of FlowMatchEulerDiscreteScheduler.step
    (and of the released inversion's step_forward), so that the source row is exactly the
    backbone's own FluxPipeline generation."""
    return (sample.to(torch.float32) + (sigma_to - sigma_from) * v).to(v.dtype)


def stable_flow_generate(
    pipe: Any,
    backbone: Any,
    prompts: list[str],
    seed: int,
    options: StableFlowOptions,
    state: InjectionState,
) -> torch.Tensor:
    """The generation path: every row from the x_T FluxPipeline draws from `seed`, guidance
    `options.guidance`, injection at every step. Returns the final packed latents."""
    embeds, pooled, text_ids = encode_prompts(pipe, backbone, prompts, options)
    size = backbone.resolution
    x_t, image_ids = pipe.prepare_latents(
        1,
        pipe.transformer.config.in_channels // 4,
        size,
        size,
        embeds.dtype,
        backbone.device,
        torch.Generator("cpu").manual_seed(seed),
    )
    cond = Conditioning(embeds, pooled, text_ids, image_ids)
    latents = x_t.repeat(len(prompts), 1, 1)
    timesteps, sigmas = schedule(pipe, backbone, options.steps, latents.shape[1])
    state.active, state.text_tokens = True, embeds.shape[1]
    for i, t in enumerate(timesteps):
        v = velocity(pipe, latents, t, [options.guidance] * len(prompts), cond)
        latents = euler(latents, v, sigmas[i], sigmas[i + 1])
    return latents


def stable_flow_real(
    pipe: Any,
    backbone: Any,
    prompts: list[str],
    image: Any,
    options: StableFlowOptions,
    state: InjectionState,
) -> torch.Tensor:
    """The real-image path: the nudged latent inverted with the source prompt (guidance 1, no
    injection), then the edit from the inverted x_T with the source row replaced by the
    inversion's latents after every step."""
    embeds, pooled, text_ids = encode_prompts(pipe, backbone, prompts, options)
    x0 = backbone.encode_images([image]) * options.nudging
    size = x0.shape[-1]
    packed = pack_latents(x0)
    image_ids = latent_image_ids(size // 2, size // 2, backbone.device, x0.dtype)
    cond = Conditioning(embeds, pooled, text_ids, image_ids)
    n = options.inversion_steps
    timesteps, sigmas = schedule(pipe, backbone, n, packed.shape[1])
    # levels[k]: the latent at sigma_{n-k} (levels[0] the nudged image, levels[n] x_T)
    levels, latents = [packed], packed
    for k in range(n):
        i = n - 1 - k
        v = velocity(pipe, latents, timesteps[i], [1.0], cond, rows=slice(0, 1))
        latents = euler(latents, v, sigmas[i + 1], sigmas[i])
        levels.append(latents)
    latents = levels[-1].repeat(len(prompts), 1, 1)
    guidance = [1.0] + [options.edit_guidance] * (len(prompts) - 1)
    state.text_tokens = embeds.shape[1]
    for i, t in enumerate(timesteps):
        state.active = True
        v = velocity(pipe, latents, t, guidance, cond)
        latents = euler(latents, v, sigmas[i], sigmas[i + 1])
        # the released code sets row 0 to inverted_latent_list[-i] (levels[1] at i = 0,
        # levels[n + 1 - i] after): two levels behind the row's; `aligned` uses its own level
        k = (1 if i == 0 else n + 1 - i) if options.source_path == "official" else n - 1 - i
        latents[0] = levels[k][0]
    return latents


def decode(pipe: Any, backbone: Any, latents: torch.Tensor) -> list[Any]:
    size = 2 * (backbone.resolution // (pipe.vae_scale_factor * 2))  # latent rows, even
    return backbone.decode_latents(unpack_latents(latents, size, size))


METHOD = StableFlow  # what `api.registry()` finds by the folder's name
