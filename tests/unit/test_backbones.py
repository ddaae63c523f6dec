"""Tiny offline backbones: real classes, real tokenizer, folder round trip, clear failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partedit_bench.cli import main
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.errors import UserError


def generate(backbone, prompt="a photo of a person with red hair"):
    pipe = backbone.pipeline()
    out = pipe(
        prompt,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        height=64,
        width=64,
    )
    return out.images[0]


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_tiny_backbone_loads_from_saved_folder_exactly_as_from_memory(name, tmp_path):
    memory = load_backbone(name)
    memory.save(tmp_path / name)
    folder = load_backbone(str(tmp_path / name))
    assert folder.family == memory.family and folder.random_weights
    assert folder.resolution == memory.resolution == 64
    assert folder.fingerprint == memory.fingerprint
    for key in ("unet", "vae", "text_encoder"):
        a, b = memory.components[key].state_dict(), folder.components[key].state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(generate(memory), generate(folder))


def test_fingerprint_tells_weights_apart():
    a = load_backbone("tiny-sd")
    b = load_backbone("tiny-sd")
    assert a.fingerprint == b.fingerprint
    with torch.no_grad():
        next(b.unet.parameters()).view(-1)[0] += 1.0
    b._fingerprint = None
    assert a.fingerprint != b.fingerprint


def test_real_clip_tokenizer_ids():
    backbone = load_backbone("tiny-sdxl")
    # CLIP's BPE ids for "a photo of a cat" (OpenAI CLIP vocabulary, 49408 tokens)
    expected = [49406, 320, 1125, 539, 320, 2368, 49407]
    first = backbone.components["tokenizer"]("a photo of a cat", padding="max_length", max_length=9)
    second = backbone.components["tokenizer_2"](
        "a photo of a cat", padding="max_length", max_length=9
    )
    assert first.input_ids == expected + [49407, 49407]  # CLIP-L pads with <|endoftext|>
    assert second.input_ids == expected + [0, 0]  # SDXL's second tokenizer pads with "!"
    assert len(backbone.components["tokenizer"]) == 49408


def test_architectures_match_their_families():
    sd, sdxl = load_backbone("tiny-sd"), load_backbone("tiny-sdxl")
    assert sdxl.unet.config.addition_embed_type == "text_time"
    assert (
        sdxl.unet.config.cross_attention_dim
        == 64
        == (
            sdxl.components["text_encoder"].config.hidden_size
            + sdxl.components["text_encoder_2"].config.hidden_size
        )
    )
    for backbone in (sd, sdxl):
        levels = len(backbone.unet.config.block_out_channels)
        assert levels >= 3
        deepest = f"down_blocks.{levels - 1}."
        cross = [n for n in backbone.unet.attn_processors if n.startswith(deepest) and "attn2" in n]
        assert cross, "cross-attention must exist at 1/4 of the latent size"
    assert (
        load_backbone("tiny-sd-v").components["scheduler"].config.prediction_type == "v_prediction"
    )


def test_missing_real_weights_fail_in_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError) as info:
        load_backbone("sd21")
    message = str(info.value)
    assert "stabilityai/stable-diffusion-2-1-base" in message and "hf download" in message
    assert "\n" not in message
    code = main(
        [
            "run",
            "--methods",
            "identity",
            "--backbone",
            "sdxl",
            "--limit",
            "1",
            "--output",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "stable-diffusion-xl-base-1.0" in err[-1]
    assert err[-1].startswith("partedit-bench: error:")
