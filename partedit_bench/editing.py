"""One part edit on one image, from Python: `edit(...)` (the `edit` command and the demo call
it). The edit itself goes through `jobs.perform`, the same step every job of a run takes (the
edit and its mask brought back to the source's size, timed).

    >>> from partedit_bench import edit
    >>> result = edit("photo.jpg", prompt="a photo of a man",
    ...               edit_prompt="a photo of a man with a robotic <humanoid-head>",
    ...               backbone="sdxl", method="partedit")  # doctest: +SKIP
    >>> result.image.save("out.png"); result.mask  # (H, W) float in [0, 1]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from partedit_bench.data.schema import CANONICAL_PARTS, PART_TOKEN, Sample, write_part_words
from partedit_bench.errors import UserError, did_you_mean


@dataclass
class Edit:
    """What `edit` returns.

    Args:
        image: the edited image, at the source's size.
        mask: (H, W) float in [0, 1], the method's own estimate of the edited region (PartEdit's
            blend mask), or None for a method without one.
        source: the image that was edited (the input, or the one generated from the prompt).
        seconds: the edit's wall time (the backbone's loading excluded).
        method, backbone: what made it.
        synthetic: True when the source was generated from the prompt and seed.
        extras: the method's own notes (e.g. an inversion's reconstruction error).
        mask_png: the mask as the 8-bit image a run stores beside an edit (None without one).
    """

    image: Image.Image
    mask: np.ndarray | None
    source: Image.Image
    seconds: float
    method: str
    backbone: str
    synthetic: bool
    extras: dict[str, Any] = field(default_factory=dict)
    mask_png: Image.Image | None = None


def parts_in(edit_prompt: str) -> list[str]:
    """The part tokens written in an edit prompt (`... a robotic <humanoid-head>`), checked."""
    found = PART_TOKEN.findall(edit_prompt)
    if not found:
        raise UserError(
            f"the edit prompt names no part: write it as a token, e.g. 'a robotic "
            f"<humanoid-head>' (parts: {', '.join(CANONICAL_PARTS)})"
        )
    for part in found:
        if part not in CANONICAL_PARTS:
            raise UserError(
                f"unknown part <{part}> in the edit prompt{did_you_mean(part, CANONICAL_PARTS)} "
                f"(parts: {', '.join(CANONICAL_PARTS)})"
            )
    return list(dict.fromkeys(found))


def edit_sample(
    prompt: str, edit_prompt: str, seed: int, instruction: str | None, synthetic: bool
) -> Sample:
    """The benchmark item of an ad-hoc edit: the prompts as given, the P2P target with each
    part token written as its words, the instruction if any."""
    parts = parts_in(edit_prompt)
    words = {p: p.replace("-", " ") for p in parts}
    template = write_part_words(edit_prompt, lambda token: words[token])
    edit_words = [w for w in template.split() if w not in prompt.split()]
    return Sample(
        id="edit",
        split="synth" if synthetic else "real",
        class_name="",
        part=words[parts[0]],
        part_token=parts[0],
        edit=" ".join(edit_words),
        prompt_original=prompt,
        prompt_changed=edit_prompt,
        p2p_prompt=prompt,
        p2p_template=template,
        instructp2p_edit=[instruction] if instruction else [],
        blend_words=[words[parts[0]].split()[-1]],
        seed=seed,
    )


_BACKBONES: dict[tuple[str, str, str], Any] = {}


def cached_backbone(name: str, device: str = "auto", dtype: str = "auto") -> Any:
    """A loaded backbone, kept for the next edit of this process (the demo's, a notebook's)."""
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.engine.devices import pick_device

    key = (name, device, dtype)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(name, pick_device(device), dtype)
    return _BACKBONES[key]


def edit(
    image: str | Path | Image.Image | None = None,
    *,
    prompt: str,
    edit_prompt: str,
    method: str = "partedit",
    backbone: str | Any = "partworld-sd",
    seed: int = 0,
    options: dict[str, Any] | None = None,
    mask: str | Path | np.ndarray | None = None,
    instruction: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    on_step: Callable[[int], None] | None = None,
) -> Edit:
    """Edits one image, or, with `image=None`, generates the source from `prompt` and `seed`
    and edits it (the paper's synthetic setting).

    Args:
        image: a file, a PIL image, or None.
        prompt: describes the source ("a photo of a man").
        edit_prompt: the edit, naming the part as a token ("a photo of a man with a robotic
            <humanoid-head>").
        method: any registered method (or `module:Class`).
        backbone: a registry name, a diffusers folder, or a loaded `Backbone`.
        options: the method's options (`{"t_e": 30, "omega": 1.0}`).
        mask: the part mask, for methods that take one (blended_latent, sdxl_inpaint).
        instruction: for instruction editors (ip2p).
        on_step: called with the count of UNet calls so far (a progress bar).

    Raises:
        UserError: bad input (one line): an unreadable image, no known part token, a method
            that cannot run on this backbone, a missing token or mask, a mask of another size.
    """
    from partedit_bench.api import (
        MethodUnavailable,
        build_options,
        resolve_method_class,
        unsupported_backbone,
        with_step_counts,
    )
    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.jobs import perform

    cls = resolve_method_class(method)
    chosen = build_options(cls, with_step_counts(cls, dict(options or {})))
    synthetic = image is None
    sample = edit_sample(prompt, edit_prompt, seed, instruction, synthetic)
    source = None
    if isinstance(image, Image.Image):
        source = image.convert("RGB")
    elif image is not None:
        source = load_image(image)
    adapter = check_before_loading(cls, chosen, backbone, mask, instruction)
    loaded = backbone if not isinstance(backbone, (str, Path)) else None
    if loaded is None:
        loaded = cached_backbone(str(backbone), device, dtype)
    unsupported = unsupported_backbone(cls, loaded)
    if unsupported:
        raise UserError(unsupported)
    try:
        adapter.preflight(loaded, [sample])  # e.g. the part token exists for this backbone
        adapter.inputs_fingerprint(sample)  # loads a special checkpoint
    except MethodUnavailable as exc:
        raise UserError(f"{cls.name} cannot run here: {exc}") from exc
    if source is None:
        source = generate_source(loaded, prompt, seed, chosen)
    gt = None
    if mask is not None:
        gt = load_mask(mask, source.size) if isinstance(mask, (str, Path)) else np.asarray(mask)
        if gt.shape != (source.size[1], source.size[0]):
            raise UserError(
                f"the mask is {gt.shape[1]}x{gt.shape[0]}, the image {source.size[0]}x"
                f"{source.size[1]}"
            )
        gt = gt.astype(bool)
    from partedit_bench.api import EditRequest

    request = EditRequest(sample, source, seed, chosen, loaded, gt, synthetic)
    done = perform(adapter, request, device=str(loaded.device), on_step=on_step)
    adapter.release()
    return Edit(
        done.image,
        done.mask,
        source,
        done.seconds,
        cls.name,
        loaded.name,
        synthetic,
        done.result.extras,
        done.mask_png,
    )


def check_before_loading(
    cls: Any, options: Any, backbone: Any, mask: Any, instruction: str | None
) -> Any:
    """What an edit can be refused for without a model (the `edit` command calls it before the
    backbone loads): a method that edits inside a given mask without one, an instruction
    editor without an instruction, and, for a named backbone, a family the method does not
    support or a special checkpoint that does not exist for it. Returns the method object."""
    from types import SimpleNamespace

    from partedit_bench.api import MethodUnavailable, unsupported_backbone
    from partedit_bench.engine.registry import BACKBONES

    adapter = cls(options)
    if adapter.needs_gt_mask() and mask is None:
        raise UserError(f"{cls.name} edits inside a given mask: pass --mask (mask=...)")
    if "instruction" in cls.needs and not instruction:
        raise UserError(f"{cls.name} edits from an instruction: pass --instruction TEXT")
    name = str(backbone) if isinstance(backbone, (str, Path)) else None
    if name in BACKBONES:  # a named backbone's family and checkpoints are known unloaded
        planned = SimpleNamespace(name=name, family=BACKBONES[name].family)
        unsupported = unsupported_backbone(cls, planned)
        if unsupported:
            raise UserError(unsupported)
        if cls.special_checkpoint is not None and not adapter.is_own_checkpoint(planned):
            from partedit_bench.methods.specials import special_name

            try:
                special_name(planned, str(cls.special_checkpoint))  # type: ignore[arg-type]
            except MethodUnavailable as exc:
                raise UserError(f"{cls.name} cannot run on {name}: {exc}") from exc
    return adapter


def generate_source(backbone: Any, prompt: str, seed: int, options: Any) -> Image.Image:
    """The synthetic setting's source: the backbone's own text-to-image pipeline from `prompt`
    and a CPU generator seeded with `seed`, at the method's steps and guidance (or 50 and
    7.5), as `data build-synth` renders a suite; methods that regenerate the source in their
    own loop (partedit, p2p, masactrl) reproduce this image."""
    steps = getattr(options, "steps", None) or 50
    guidance = getattr(options, "guidance", None) or 7.5
    return text_to_image(backbone, prompt, seed, steps, guidance)


def text_to_image(
    backbone: Any, prompt: str, seed: int, steps: int, guidance: float, output_type: str = "pil"
) -> Any:
    """The backbone's own diffusers pipeline at its native size from a CPU generator seeded
    with `seed` (no control): a PIL image, or the final latents with `output_type="latent"`."""
    import torch

    return backbone.pipeline()(
        prompt,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        height=backbone.resolution,
        width=backbone.resolution,
        output_type=output_type,
    ).images[0 if output_type == "pil" else slice(None)]


def overlay(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The image with a method's soft mask shown (`data.masks.mask_view`: scaled to its own
    maximum, the outline where it reaches half of it)."""
    from partedit_bench.data.masks import mask_view

    return mask_view(image, mask)
