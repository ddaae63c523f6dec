"""The PartWorld backbone: training resumes exactly, the export loads as a backbone, and the
shipped model follows its prompts (checked with the shipped attribute classifier)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from partedit_bench.api import METHOD_REGISTRY
from partedit_bench.cli import main
from partedit_bench.config import RunConfig, resolve_variants
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.engine.registry import PARTWORLD_FOLDER
from partedit_bench.errors import UserError
from partedit_bench.partworld.model import PartWorldTrainConfig
from partedit_bench.partworld.train import Trainer, TrainingStopped

TINY = PartWorldTrainConfig(
    images=24,
    vae_channels=(16, 16, 32),
    vae_steps=4,
    vae_batch=4,
    decoder_steps=4,
    unet_channels=(16, 32, 32),
    unet_heads=(2, 2, 4),
    text_width=32,
    unet_steps=6,
    batch=4,
    checkpoint_every=2,
    warmup=2,
)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for part in ("unet", "vae", "text_encoder"):
        for name, tensor in load_file(next((folder / part).glob("*.safetensors"))).items():
            out[f"{part}.{name}"] = tensor
    return out


def test_training_stopped_and_resumed_equals_one_uninterrupted_run(tmp_path):
    Trainer(tmp_path / "a", TINY, progress=False).run()
    for stop in (2, 2, 4):  # stop inside the VAE, the decoder, then the UNet stage
        with pytest.raises(TrainingStopped):
            Trainer(tmp_path / "b", TINY, progress=False, stop_at=stop).run()
    Trainer(tmp_path / "b", TINY, progress=False).run()
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # the decoder stage trained the decoder alone: the encoder (so the UNet's latents) is the
    # vae stage's
    from safetensors.torch import load_file

    first = load_file(tmp_path / "a" / "_training" / "vae.safetensors")
    encoder = [k for k in first if k.startswith(("encoder.", "quant_conv."))]
    assert encoder and all(torch.equal(first[k], a[f"vae.{k}"]) for k in encoder)
    assert not torch.equal(first["decoder.conv_out.weight"], a["vae.decoder.conv_out.weight"])
    saved = json.loads((tmp_path / "b" / "training_config.json").read_text())
    assert saved["unet_steps"] == TINY.unet_steps and saved["data_seed"] == TINY.data_seed
    # the exported folder is a backbone every method loads: trained (not random) weights
    backbone = load_backbone(str(tmp_path / "a"))
    assert backbone.family == "sd" and backbone.resolution == 64 and not backbone.random_weights
    assert backbone.unet.config.sample_size == 16
    cross = [n for n, m in backbone.unet.named_modules() if n.endswith("attn2")]
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in cross} >= {
        "down_blocks.0",
        "down_blocks.1",
        "down_blocks.2",
    }
    scale = backbone.vae.config.scaling_factor
    latents = backbone.encode_images([backbone.decode_latents(torch.zeros(1, 4, 16, 16))[0]])
    assert latents.shape == (1, 4, 16, 16) and scale != 0.18215


def test_a_run_with_other_settings_is_refused(tmp_path):
    Trainer(tmp_path / "a", TINY, progress=False).run(("data",))
    other = PartWorldTrainConfig(**{**TINY.to_json(), "lr": 1e-3})
    with pytest.raises(UserError, match="different settings \\(lr\\)"):
        Trainer(tmp_path / "a", other, progress=False)


def test_train_command_rejects_unknown_settings(capsys):
    assert main(["partworld", "train", "--set", "nope=1"]) == 2
    assert "--set expects KEY=VALUE with a known key" in capsys.readouterr().err


def test_the_default_run_is_every_method_on_the_trained_backbone():
    config = RunConfig()
    assert config.backbone == "partworld-sd"
    names = [v.name for v in resolve_variants(config.methods, [], None)]
    assert names == list(METHOD_REGISTRY)


shipped = pytest.mark.skipif(
    not (PARTWORLD_FOLDER / "model_index.json").is_file(), reason="models/partworld-sd missing"
)


@shipped
def test_shipped_model_loads_offline_with_small_files_and_matching_tokens():
    for path in PARTWORLD_FOLDER.rglob("*.safetensors"):
        if "_training" not in path.parts:
            assert path.stat().st_size < 16 * 2**20, path
    backbone = load_backbone("partworld-sd")
    assert backbone.name == "partworld-sd" and not backbone.random_weights and backbone.note == ""
    # the saved tokenizer is the one the model was trained with (real CLIP BPE, same padding)
    from partedit_bench.engine.clip_bpe import clip_tokenizer

    trained_with = clip_tokenizer()
    for text in ("a photo of a red car with a blue hood in a park", ""):
        kw = {"padding": "max_length", "max_length": 77, "truncation": True}
        assert (
            backbone.components["tokenizer"](text, **kw).input_ids
            == trained_with(text, **kw).input_ids
        )
    from partedit_bench.tokens import load_token, token_path

    for part in ("human-hair", "car-hood", "chair-seat", "animal-head"):
        token = load_token(token_path("partworld-sd", part))
        assert token.meta["fingerprint"] == backbone.fingerprint, part


@shipped
def test_shipped_model_draws_the_object_class_its_prompt_names():
    from safetensors.torch import load_file

    from partedit_bench.partworld.evaluate import (
        TEST_SEED,
        AttributeClassifier,
        generate,
        render_labelled,
    )

    classifier = AttributeClassifier()
    classifier.load_state_dict(load_file(PARTWORLD_FOLDER / "eval" / "classifier.safetensors"))
    backbone = load_backbone("partworld-sd")
    _, labels, captions = render_labelled(16, TEST_SEED + 1)
    images = generate(backbone, captions, steps=10, guidance=7.5, seed=0)
    predicted = classifier.predict(images)
    hits = [p["class"] == lab["class"] for p, lab in zip(predicted, labels, strict=True)]
    # chance is 4/16 (four classes in turn); a model that ignores its prompt fails this
    assert np.mean(hits) >= 0.75, (hits, captions)


def test_default_run_gives_partedit_and_ef_ddpm_the_same_inversion(monkeypatch):
    """The shipped default options make both EF-DDPM users invert identically: recorded on
    tiny-sd (the same code path) with the steps shortened for speed."""
    import yaml

    from partedit_bench.api import EditRequest
    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.data.suites import load_suite
    from partedit_bench.engine import inversion

    shipped_options = yaml.safe_load((PARTWORLD_FOLDER / "default_methods.yaml").read_text())
    ef, pe = shipped_options["options"]["ef_ddpm"], shipped_options["options"]["partedit"]
    assert ef["steps"] == pe["steps"] and ef["cfg_src"] == pe["source_guidance"]
    assert pe["inversion"] == "ef-ddpm"
    config = RunConfig(backbone="partworld-sd")
    assert config.method_config_path() == str(PARTWORLD_FOLDER / "default_methods.yaml")
    assert RunConfig(backbone="tiny-sd").method_config_path() is None

    recorded = []
    original = inversion.invert
    monkeypatch.setattr(
        inversion, "invert", lambda *a, **k: recorded.append(original(*a, **k)) or recorded[-1]
    )
    sets = ["partedit.steps=4", "ef_ddpm.steps=4", "ef_ddpm.skip=1"]
    variants = resolve_variants(
        "partedit,ef_ddpm", sets, str(PARTWORLD_FOLDER / "default_methods.yaml")
    )
    backbone = load_backbone("tiny-sd")
    sample = load_suite("partworld").samples[0]
    image = load_image(sample.original_image)
    for variant in (v for v in variants if getattr(v.options, "mask_source", "tokens") == "tokens"):
        method = variant.cls(variant.options)
        method.preflight(backbone, [sample])
        mask = load_mask(sample.gt_mask, image.size)
        method.edit(EditRequest(sample, image, 0, variant.options, backbone, mask))
    assert len(recorded) == 2
    a, b = recorded
    assert a.timesteps == b.timesteps
    # the same noise draws bit for bit; the same model calls up to float rounding (the two
    # methods batch their prompt encodings differently)
    for xa, xb in zip(a.xs[:-1], b.xs[:-1], strict=True):
        torch.testing.assert_close(xa, xb, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.xs[0], b.xs[0], rtol=0, atol=0)
    for za, zb in zip(a.zs, b.zs, strict=True):
        torch.testing.assert_close(za, zb, rtol=1e-4, atol=1e-4)


@shipped
def test_no_public_special_checkpoint_is_paired_with_the_trained_model():
    from partedit_bench.api import MethodUnavailable
    from partedit_bench.methods.specials import load_special

    backbone = load_backbone("partworld-sd")
    for kind in ("ip2p", "inpaint"):
        with pytest.raises(MethodUnavailable, match=f"no {kind} checkpoint was trained"):
            load_special(backbone, kind)


def test_export_before_training_is_one_clear_error(tmp_path, capsys):
    code = main(["partworld", "train", "--out", str(tmp_path / "m"), "--stages", "export"])
    err = capsys.readouterr().err
    assert code == 2 and "the unet stage has not finished" in err and "Traceback" not in err


@shipped
def test_evaluate_with_a_missing_classifier_file_is_one_clear_error(tmp_path, capsys):
    code = main(
        [
            "partworld",
            "evaluate",
            "--classifier",
            str(tmp_path / "nope.safetensors"),
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "classifier weights not found" in err and "Traceback" not in err
    assert not (tmp_path / "eval").exists()
