"""Part tokens: file format, official import, refusal of foreign tokens, training, and the
equivalence of maps from cached queries with maps captured in a real UNet pass."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from partedit_bench.cli import main
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.engine.attention import (
    RecordingAttnProcessor,
    cross_attention_layers,
    decoder_cross_attention_layers,
    module,
    processors,
)
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.errors import UserError
from partedit_bench.tokens import PartToken, import_token, load_token
from partedit_bench.tokens.training import (
    TrainConfig,
    cache_queries,
    token_maps,
    train_token,
    training_timesteps,
)


@pytest.fixture(scope="module")
def backbones(tiny):
    return {name: tiny(name) for name in ("tiny-sd", "tiny-sdxl")}


def part_samples(part: str, count: int):
    return [s for s in load_suite("partworld-train").samples if s.part_token == part][:count]


def test_save_load_round_trip(backbones, tmp_path):
    backbone = backbones["tiny-sd"]
    meta = {
        "backbone": "tiny-sd",
        "fingerprint": backbone.fingerprint,
        "width": 32,
        "part": "animal-head",
        "layers": ["up_blocks.0.attentions.0.transformer_blocks.0.attn2"],
        "heldout_miou": 0.5,
    }
    token = PartToken(torch.randn(2, 32), meta)
    loaded = load_token(token.save(tmp_path / "t.safetensors"), backbone)
    torch.testing.assert_close(loaded.embedding, token.embedding, rtol=0, atol=0)
    assert loaded.meta == meta and loaded.layers == meta["layers"]


def test_official_format_import(backbones, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(tmp_path / "data"))
    backbone = backbones["tiny-sdxl"]
    embedding = torch.randn(2, 64)
    torch.save(embedding, tmp_path / "human_head.pt")
    torch.save({"embedding": embedding * 2}, tmp_path / "dict.pt")
    save_file({"embedding": embedding * 3}, str(tmp_path / "quadruped_head.safetensors"))
    stored = import_token(tmp_path / "human_head.pt", backbone, "humanoid-head")
    assert stored == tmp_path / "data" / "tokens" / "tiny-sdxl" / "humanoid-head.safetensors"
    torch.testing.assert_close(load_token(stored, backbone).embedding, embedding)
    out = import_token(tmp_path / "dict.pt", backbone, "car-body", tmp_path / "c.safetensors")
    torch.testing.assert_close(load_token(out, backbone).embedding, embedding * 2)
    assert (
        main(
            [
                "import-token",
                str(tmp_path / "quadruped_head.safetensors"),
                "--backbone",
                "tiny-sdxl",
                "--part",
                "animal-head",
                "--output",
                str(tmp_path / "q.st"),
            ]
        )
        == 0
    )
    torch.testing.assert_close(load_token(tmp_path / "q.st", backbone).embedding, embedding * 3)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_import_refuses_code_and_wrong_shapes(backbones, tmp_path):
    _Payload.target = str(tmp_path / "executed")
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"embedding": _Payload()}, fh)
    with pytest.raises(UserError, match="weights only"):
        import_token(tmp_path / "evil.pt", backbones["tiny-sdxl"], "humanoid-head")
    assert not (tmp_path / "executed").exists()
    torch.save(torch.randn(2, 2048), tmp_path / "sdxl.pt")
    with pytest.raises(
        UserError, match=r"has shape \(2, 2048\), backbone tiny-sdxl needs \(2, 64\)"
    ):
        import_token(
            tmp_path / "sdxl.pt",
            backbones["tiny-sdxl"],
            "humanoid-head",
            tmp_path / "x.safetensors",
        )
    with pytest.raises(UserError, match="unknown part token 'head'"):
        import_token(tmp_path / "sdxl.pt", backbones["tiny-sdxl"], "head")


def test_foreign_token_is_refused(backbones, tmp_path):
    sd = backbones["tiny-sd"]
    path = PartToken(
        torch.randn(2, 32),
        {"backbone": "tiny-sd", "fingerprint": sd.fingerprint, "part": "chair-seat"},
    ).save(tmp_path / "t.safetensors")
    with pytest.raises(UserError, match="needs \\(2, 64\\)"):
        load_token(path, backbones["tiny-sdxl"])
    other = load_backbone("tiny-sd")
    with torch.no_grad():
        next(other.unet.parameters()).view(-1)[0] += 1
    other._fingerprint = None
    with pytest.raises(UserError) as info:
        load_token(path, other)
    assert "was made for backbone 'tiny-sd'" in str(info.value)
    assert "train-token --backbone tiny-sd --part chair-seat" in str(info.value)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_cached_query_maps_equal_maps_captured_in_a_unet_pass(backbones, name):
    """Pass 1 (empty prompt) records queries; pass 2 is conditioned on E itself and its
    processors take pass 1's queries, as the official localization path does; the probabilities
    pass 2 computes inside the UNet must equal token_maps() from the cached queries."""
    backbone = backbones[name]
    samples = part_samples("humanoid-torso", 2)
    layers = decoder_cross_attention_layers(backbone.unet, 8)
    timesteps = training_timesteps(backbone, "intermediate")[:2]
    cache = cache_queries(backbone, samples, layers, timesteps, seed=3)
    embedding = torch.randn(2, backbone.text_width, generator=torch.Generator().manual_seed(1))
    expected = token_maps(backbone, cache, embedding)

    latents = backbone.encode_images([load_image(s.original_image) for s in samples])
    _, added = backbone.encode_prompts([""])
    queries = {
        n: [
            cache.queries[n][i, j].reshape(-1, *cache.queries[n].shape[-2:])
            for i in range(len(samples))
            for j in range(len(timesteps))
        ]
        for n in layers
    }
    store: dict[str, list[torch.Tensor]] = {}
    recorders = {
        n: RecordingAttnProcessor(n, store, ("probs",), query_source=queries) for n in layers
    }
    with torch.no_grad(), processors(backbone.unet, recorders):
        for i in range(len(samples)):
            for t in timesteps:
                backbone.unet(
                    latents[i : i + 1],
                    t,
                    encoder_hidden_states=embedding[None],
                    added_cond_kwargs=added,
                )
    for name_ in layers:
        probs = torch.stack(store[f"{name_}:probs"])  # (images*T, heads, N, 2)
        heads = module(backbone.unet, name_).heads
        captured = probs[..., 1].reshape(len(samples), len(timesteps), heads, -1).mean(2)
        torch.testing.assert_close(
            captured, expected[name_].reshape(captured.shape), rtol=1e-5, atol=1e-6
        )


def test_optimizer_lowers_the_loss_on_a_fixed_batch(backbones):
    samples = part_samples("car-hood", 3)
    # each mode on one backbone (both gradient paths, both text-encoder shapes); coupled: E
    # also drives every later layer, so the paper's lr 30 overshoots on a 12-step run, and a
    # smaller step shows the gradient path works
    for name, mode, lr in (("tiny-sd", "decoupled", 30.0), ("tiny-sdxl", "coupled", 1.0)):
        result = train_token(
            backbones[name],
            "car-hood",
            samples,
            TrainConfig(steps=12, images=2, heldout=1, mode=mode, lr=lr),
        )
        assert result.losses[-1] < result.losses[0] - 0.01, (name, mode, result.losses)
        assert result.token.embedding.shape == (2, backbones[name].text_width)
        meta = result.token.meta
        assert meta["fingerprint"] == backbones[name].fingerprint and meta["mode"] == mode
        assert 0 <= meta["heldout_miou"] <= 1 and meta["heldout_images"]


def test_layer_choice_matches_the_paper():
    sdxl_like = load_backbone("tiny-sdxl").unet
    first8 = decoder_cross_attention_layers(sdxl_like, 8)
    assert first8 == [
        f"up_blocks.0.attentions.{a}.transformer_blocks.{b}.attn2"
        for a in range(2)
        for b in range(4)
    ]
    every = cross_attention_layers(sdxl_like)
    assert every[0].startswith("down_blocks.1") and every[-1].startswith("up_blocks.1")
    ts = training_timesteps(load_backbone("tiny-sd"), "strength-0.25")
    assert len(ts) == 13 and max(ts) <= 250 and ts == sorted(ts, reverse=True)
    mid = training_timesteps(load_backbone("tiny-sd"), "intermediate")
    assert len(mid) == 11 and 350 < min(mid) < max(mid) < 650


def test_train_token_command_writes_tokens_where_runs_look(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(tmp_path / "data"))
    import shutil

    from partedit_bench.paths import REPO_ROOT

    shutil.copytree(
        REPO_ROOT / "benchmark_data" / "partworld-train", tmp_path / "data" / "partworld-train"
    )
    assert (
        main(
            [
                "train-token",
                "--backbone",
                "tiny-sd",
                "--part",
                "chair-seat,car-body",
                "--steps",
                "3",
                "--images",
                "2",
                "--heldout",
                "1",
                "--table",
                str(tmp_path / "t.md"),
            ]
        )
        == 0
    )
    for part in ("chair-seat", "car-body"):
        token = load_token(tmp_path / "data" / "tokens" / "tiny-sd" / f"{part}.safetensors")
        assert token.meta["steps"] == 3 and token.part == part
    table = (tmp_path / "t.md").read_text()
    assert "| tiny-sd | chair-seat | strength-0.25 |" in table
    assert np.isfinite(float(table.splitlines()[2].split("|")[4]))


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--steps", "0", "--steps must be at least 1"),
        ("--images", "0", "--images must be at least 1"),
        ("--layers", "0", "--layers must be at least 1"),
        ("--lr", "nan", "--lr must be a positive number"),
        ("--heldout", "-1", "--heldout must be at least 0"),
    ],
)
def test_train_token_refuses_bad_settings_before_writing(
    tmp_path, monkeypatch, capsys, flag, value, expected
):
    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(tmp_path / "data"))
    code = main(["train-token", "--backbone", "tiny-sd", "--part", "chair-seat", flag, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "data" / "tokens").exists()


def test_train_token_says_when_nothing_is_held_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(tmp_path / "data"))
    import shutil

    from partedit_bench.paths import REPO_ROOT

    shutil.copytree(
        REPO_ROOT / "benchmark_data" / "partworld-train", tmp_path / "data" / "partworld-train"
    )
    images = sum(1 for s in load_suite("partworld-train").samples if s.part_token == "chair-seat")
    args = ["train-token", "--backbone", "tiny-sd", "--part", "chair-seat", "--steps", "2"]
    assert main([*args, "--images", str(images), "--table", str(tmp_path / "t.md")]) == 0
    captured = capsys.readouterr()
    assert "no image held out" in (captured.out + captured.err).replace("\n", " ")
    assert "(training)" in (tmp_path / "t.md").read_text()
    token = load_token(tmp_path / "data" / "tokens" / "tiny-sd" / "chair-seat.safetensors")
    assert token.meta["heldout_miou"] is None and token.meta["heldout_images"] == []
    assert 0 <= token.meta["train_miou"] <= 1


def test_train_token_never_replaces_a_token_without_overwrite(tmp_path, monkeypatch, capsys):
    import shutil

    from partedit_bench.paths import REPO_ROOT

    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(tmp_path / "data"))
    shutil.copytree(
        REPO_ROOT / "benchmark_data" / "partworld-train", tmp_path / "data" / "partworld-train"
    )
    target = tmp_path / "data" / "tokens" / "tiny-sd" / "chair-seat.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"a shipped token")
    args = ["train-token", "--backbone", "tiny-sd", "--part", "chair-seat", "--steps", "1"]
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "would replace 1 existing token" in err and "--overwrite" in err, err
    assert target.read_bytes() == b"a shipped token"
