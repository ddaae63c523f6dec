"""Half precision on the CPU: every method, the inversions, token training and evaluation run
on both tiny backbones in float16 and bfloat16, with every tensor that enters a model layer
checked for its device and dtype (`--check-tensors`), and finite outputs (a NaN latent fails
its job instead of decoding to a black image)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from partedit_bench.api import METHOD_REGISTRY, resolve_method_class
from partedit_bench.cli import main
from partedit_bench.store import iter_records

#: every registered method at its few-step options (a new method joins without a change here)
SHORT = {m: dict(resolve_method_class(m).smoke_options) for m in METHOD_REGISTRY}
#: the other real-image paths: PartEdit through LEDITS++'s inversion, P2P through plain DDIM
VARIANTS = {
    "partedit_ledits": ("partedit", {"steps": 3, "t_e": 3, "inversion": "ledits"}),
    "p2p_ddim": ("p2p", {"steps": 3, "null_text": False}),
}


# each half type on one backbone (both types, both UNet and text-encoder shapes; the CUDA
# half-precision paths are the GPU check's): two runs, not four
@pytest.mark.parametrize(("backbone", "dtype"), [("tiny-sd", "bfloat16"), ("tiny-sdxl", "float16")])
def test_every_method_runs_in_half_precision(tmp_path, backbone, dtype):
    import yaml

    config = tmp_path / "methods.yaml"
    rows = [{"method": m, "label": label, "options": o} for label, (m, o) in VARIANTS.items()]
    config.write_text(yaml.safe_dump({"options": SHORT, "variants": rows}))
    out = tmp_path / "run"
    args = [
        "run", "--backbone", backbone, "--dtype", dtype, "--limit", "1", "--check-tensors",
        "--method-config", str(config), "--output", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    records = {r["variant"]: r for r in (json.loads(p.read_text()) for p in iter_records(out))}
    family = "sd" if backbone == "tiny-sd" else "sdxl"
    skipped = {m for m in METHOD_REGISTRY if family not in resolve_method_class(m).families}
    assert set(records) == set(METHOD_REGISTRY) | set(VARIANTS)
    for name, record in records.items():
        assert record["status"] == ("skipped" if name in skipped else "ok"), (name, record)
    info = json.loads((out / "run.json").read_text())
    assert info["backbone"]["dtype"] == dtype
    scored = list(out.glob("*/*/*.metrics.json"))
    assert len(scored) == len(records) - len(skipped)
    for path in scored:  # evaluation of the half-precision edits: every metric a number
        values = json.loads(path.read_text())["values"]
        assert all(v is None or math.isfinite(v) for k, v in values.items() if k != "mask_iou")


@pytest.mark.parametrize(("mode", "dtype"), [("decoupled", "bfloat16"), ("coupled", "float16")])
def test_token_training_in_half_precision_keeps_a_float32_token(tmp_path, mode, dtype):
    from partedit_bench.tokens import load_token

    args = [
        "train-token", "--backbone", "tiny-sdxl", "--dtype", dtype, "--part", "animal-head",
        "--steps", "2", "--images", "3", "--heldout", "1", "--mode", mode,
        "--output-root", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    token = load_token(tmp_path / "tiny-sdxl" / "animal-head.safetensors")
    assert token.embedding.dtype == torch.float32 and bool(token.embedding.isfinite().all())


def test_a_bfloat16_backbone_keeps_the_float32_fingerprint(tiny):
    """bfloat16 rounds more than the float16 values the fingerprint samples: the weights are
    fingerprinted before the cast, so tokens trained in float32 apply."""
    assert tiny("tiny-sdxl", "bfloat16").fingerprint == tiny("tiny-sdxl").fingerprint
    assert tiny("tiny-sdxl", "float16").fingerprint == tiny("tiny-sdxl").fingerprint


def test_latents_with_nan_fail_the_decode_with_one_line(tiny):
    from partedit_bench.engine.precision import NonFiniteLatents

    backbone = tiny("tiny-sd")
    bad = torch.zeros(1, 4, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLatents, match="NaN or inf"):
        backbone.decode_latents(bad)
    assert backbone.decode_latents(torch.zeros(1, 4, 16, 16))[0].size == (64, 64)


def test_the_tensor_check_names_the_layer_of_a_mismatch(tiny):
    from partedit_bench.engine.devices import TensorMismatch, checked_tensors

    backbone = tiny("tiny-sd", "bfloat16")
    context = torch.zeros(1, 77, 32, dtype=torch.bfloat16)
    x = torch.zeros(1, 4, 8, 8)  # float32 latents: the mistake a half-precision path makes
    mistake = r"unet\.\S+ was called with a float32 tensor; its weights are bfloat16"
    with checked_tensors([backbone]), pytest.raises(TensorMismatch, match=mistake):
        backbone.unet(x, 10, encoder_hidden_states=context)
    with checked_tensors([backbone]):  # the right dtype passes every layer
        backbone.unet(x.to(torch.bfloat16), 10, encoder_hidden_states=context)
    with pytest.raises(RuntimeError):  # (hooks removed: torch's own error, not ours)
        try:
            backbone.unet(x, 10, encoder_hidden_states=context)
        except TensorMismatch:
            pytest.fail("the check outlived its context")


def test_the_tensor_check_lets_a_model_keep_its_float32_modules(tiny):
    """transformers keeps T5's feed-forward output (`wo`) in float32 in a half-precision load
    (`_keep_in_fp32_modules`): the activations after it are float32 by design. The check
    passes them (FLUX's text encoder on a GPU failed here) and still finds other models'."""
    from partedit_bench.engine.devices import TensorMismatch, checked_tensors

    backbone = tiny("tiny-flux", "bfloat16")
    t5 = backbone.components["text_encoder_2"]
    assert "wo" in (t5._keep_in_fp32_modules or [])
    for name, module in t5.named_modules():
        if name.endswith(".wo"):
            module.float()  # as from_pretrained(torch_dtype=bfloat16) leaves it
    ids = torch.ones(1, 8, dtype=torch.long)
    with checked_tensors([backbone]):
        hidden = t5(ids).last_hidden_state
    assert hidden.dtype == torch.bfloat16
    clip = backbone.components["text_encoder"]
    linear = next(m for m in clip.modules() if isinstance(m, torch.nn.Linear))
    with checked_tensors([backbone]), pytest.raises(TensorMismatch, match=r"text_encoder\."):
        linear(torch.zeros(1, linear.in_features))


def test_a_backbone_built_on_a_device_keeps_its_scheduler_tables_on_the_cpu():
    """The random backbones are built under `torch.device(device)`; their schedulers are made
    again on the CPU (Euler's `set_timesteps` converts its tables to NumPy: CUDA tables
    failed the random SDXL's ip2p and inpainting pipelines on a GPU)."""
    from diffusers import DDIMScheduler

    from partedit_bench.engine.backbones import schedulers_on_cpu

    with torch.device("meta"):
        scheduler = DDIMScheduler(beta_schedule="scaled_linear")
    assert scheduler.alphas_cumprod.device.type == "meta"
    marker = torch.nn.Linear(1, 1)
    fixed = schedulers_on_cpu({"scheduler": scheduler, "unet": marker})
    assert fixed["unet"] is marker
    tables = [v for v in vars(fixed["scheduler"]).values() if isinstance(v, torch.Tensor)]
    assert tables and all(t.device.type == "cpu" for t in tables)
    fresh = DDIMScheduler(beta_schedule="scaled_linear")
    assert torch.equal(fixed["scheduler"].alphas_cumprod, fresh.alphas_cumprod)
    fixed["scheduler"].set_timesteps(4)
