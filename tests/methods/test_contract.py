"""The contract every registered method passes, found from the registry (built-ins, folders,
entry points): a method added later is tested here without a change to this file, as
diffusers' `PipelineTesterMixin` tests every pipeline.

Per method, on the first tiny backbone of its families, at its `smoke_options`:
- the same seed gives the same edit, also after an edit with another seed (no state kept
  between jobs);
- an edit leaves the backbone as it found it: weights, dtypes, devices, gradient flags,
  attention processors, hooks and the grad mode; every tensor that reaches a layer has the
  layer's dtype and device (`--check-tensors`); the edit is RGB at the source's size and a
  mask, if any, is finite in [0, 1] at that size;
- an unknown option and a value of the wrong type are one-line errors naming the option;
- a backbone of a family it does not support gets one line naming the method and the family,
  from `run` (the job's skip reason) and from `edit` (an error before anything loads);
- it declares what the tables and the registry show (name, version, options with defaults,
  its step options, a README in its folder).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from partedit_bench.api import (
    METHOD_REGISTRY,
    EditRequest,
    build_options,
    resolve_method_class,
    unsupported_backbone,
)
from partedit_bench.errors import UserError

#: the tiny backbone each family is tested on, cheapest family first
TINY = {"sd": "tiny-sd", "sdxl": "tiny-sdxl", "flux": "tiny-flux", "qwen-image": "tiny-qwen-image"}
METHODS = sorted(METHOD_REGISTRY)
#: transformers (5.x) installs this hook on a model's first forward and keeps it: the library's,
#: not a method's (a method's hooks would also differ from one edit to the next)
LIBRARY_HOOK = "output_capturing_hook"


def backbone_name(cls) -> str | None:
    if not cls.uses_backbone:
        return "tiny-sd"
    return next((TINY[f] for f in TINY if f in cls.families), None)


@pytest.fixture(scope="module")
def sample_and_image():
    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.data.suites import load_suite

    sample = load_suite("partworld").samples[0]
    image = load_image(sample.original_image)
    return sample, image, load_mask(sample.gt_mask, image.size)


def state_of(backbone) -> dict:
    """What an edit must leave as it found it."""
    state = {"grad_mode": torch.is_grad_enabled()}
    for part, model in backbone.components.items():
        if not isinstance(model, torch.nn.Module):
            continue
        with torch.no_grad():
            state[part, "weights"] = [
                (n, p.dtype, p.device, p.requires_grad, float(p.double().sum()),
                 float(p.double().abs().sum()))
                for n, p in model.named_parameters()
            ]  # fmt: skip
        state[part, "hooks"] = sorted(
            (name, getattr(hook, "__qualname__", type(hook).__name__))
            for name, m in model.named_modules()
            for hook in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
            if LIBRARY_HOOK not in getattr(hook, "__qualname__", "")
        )
        if hasattr(model, "attn_processors"):
            state[part, "processors"] = {
                k: type(v).__name__ for k, v in model.attn_processors.items()
            }
    return state


def run_edit(cls, backbone, sample, image, gt, seed):
    from partedit_bench.engine.devices import checked_tensors
    from partedit_bench.jobs import perform

    method = cls(build_options(cls, dict(cls.smoke_options)))
    method.preflight(backbone, [sample])
    method.inputs_fingerprint(sample)  # (loads a special checkpoint)
    from partedit_bench.methods.specials import loaded_specials

    request = EditRequest(
        sample=sample,
        image=image,
        seed=seed,
        options=method.options,
        backbone=backbone,
        mask=gt if method.needs_gt_mask() else None,
        synthetic=False,
    )
    try:
        done = perform(method, request, check=checked_tensors([backbone, *loaded_specials()]))
    finally:
        method.release()
    return done


@pytest.mark.parametrize("name", METHODS)
def test_a_method_is_deterministic_and_leaves_the_backbone_as_it_found_it(
    name, tiny, sample_and_image
):
    cls = resolve_method_class(name)
    chosen = backbone_name(cls)
    if chosen is None:
        pytest.skip(f"{name}: no tiny backbone of its families {sorted(cls.families)}")
    backbone = tiny(chosen)
    sample, image, gt = sample_and_image
    before = state_of(backbone)
    first = run_edit(cls, backbone, sample, image, gt, seed=0)
    other = run_edit(cls, backbone, sample, image, gt, seed=1)
    again = run_edit(cls, backbone, sample, image, gt, seed=0)
    after = state_of(backbone)
    assert after == before, [k for k in before if before[k] != after.get(k)]
    assert first.image.mode == "RGB" and first.image.size == image.size
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    if first.mask is not None:
        assert first.mask.shape == (image.size[1], image.size[0])
        assert np.isfinite(first.mask).all() and 0 <= first.mask.min() <= first.mask.max() <= 1
        assert np.array_equal(first.mask, again.mask)
        assert first.mask_png is not None and first.mask_png.size == image.size
    assert other.image.size == image.size


@pytest.mark.parametrize("name", METHODS)
def test_options_are_checked_by_name_and_type(name):
    cls = resolve_method_class(name)
    with pytest.raises(UserError, match=f"method '{name}' has no option 'no_such_option'"):
        build_options(cls, {"no_such_option": 1})
    hints = typing.get_type_hints(cls.Options)
    for field in dataclasses.fields(cls.Options):
        if hints.get(field.name, typing.Any) is typing.Any:
            continue
        with pytest.raises(UserError, match=f"{name}.{field.name}="):
            build_options(cls, {field.name: object()})
    build_options(cls, dict(cls.smoke_options))  # its smoke options are options


@pytest.mark.parametrize("name", METHODS)
def test_a_backbone_of_another_family_gets_one_line(name, tmp_path):
    cls = resolve_method_class(name)
    elsewhere = SimpleNamespace(family="no-such-family", name="elsewhere")
    reason = unsupported_backbone(cls, elsewhere)
    if not cls.uses_backbone:
        assert reason is None
        return
    assert reason is not None and "\n" not in reason
    assert name in reason and "no-such-family" in reason
    other = next((f for f in TINY if f not in cls.families), None)
    if other is None:
        return
    from partedit_bench.editing import edit

    with pytest.raises(UserError, match=f"{name} supports"):  # before any edit starts
        edit(
            None,
            prompt="a photo of a dog",
            edit_prompt="a photo of a dog with a red <animal-head>",
            method=name,
            backbone=TINY[other],
            mask=np.ones((64, 64), bool),
            instruction="make its head red",
        )


@pytest.mark.parametrize("name", METHODS)
def test_a_method_declares_what_the_tables_and_registry_show(name):
    cls = resolve_method_class(name)
    assert cls.name == name and cls.version and cls.__doc__
    assert dataclasses.is_dataclass(cls.Options)
    defaults = cls.Options()  # every option has a default
    assert dataclasses.asdict(defaults) is not None
    assert set(cls.step_options) <= {f.name for f in dataclasses.fields(cls.Options)}
    module = __import__(METHOD_REGISTRY[name].split(":")[0], fromlist=["_"])
    if module.__name__.startswith("partedit_bench.methods."):  # a built-in: its README
        folder = Path(module.__file__).parent
        readme = (folder / "README.md").read_text()
        assert readme.startswith(f"# {name}"), f"{folder}/README.md does not name {name}"
