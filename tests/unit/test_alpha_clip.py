"""Alpha-CLIP on open_clip with random weights: the alpha branch, official checkpoints,
loading without executing code, and the evaluate stage adding aCLIP columns later."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from partedit_bench.cli import main
from partedit_bench.errors import UserError
from partedit_bench.metrics.alpha_clip import AlphaCLIP, read_state_dict
from tests.helpers import IDENTITY_RUN

TINY = "tiny-quickgelu-test"
TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("clipcfg")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(folder)
    return TINY


def tiny_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None)


def official_visual_state(model, seed: int = 1) -> dict[str, torch.Tensor]:
    """A vision state dict as the official Alpha-CLIP release lays it out."""
    torch.manual_seed(seed)
    state = {}
    for key, value in model.visual.state_dict().items():
        key = key.replace("attn.in_proj_weight", "attn.in_proj.weight")
        key = key.replace("attn.in_proj_bias", "attn.in_proj.bias")
        state[key] = torch.randn_like(value) * 0.02
    width = model.visual.conv1.out_channels
    state["conv1_alpha.weight"] = torch.randn(width, 1, 8, 8) * 0.02
    return state


def random_batch(n: int = 2, size: int = 40):
    rng = np.random.default_rng(0)
    images = rng.random((n, size, size + 8, 3))
    alphas = np.zeros((n, size, size + 8))
    alphas[:, 10:30, 12:30] = 1
    return images, alphas


def test_zero_alpha_branch_gives_open_clips_features(tiny_clip_name):
    model, reference = tiny_model(tiny_clip_name), tiny_model(tiny_clip_name)
    scorer = AlphaCLIP(model, open_clip.get_tokenizer(tiny_clip_name), 32)
    images, alphas = random_batch()
    ours = scorer.encode_image(images, alphas)
    pixels, _ = scorer.preprocess(images, alphas)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_image(pixels), dim=-1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    # with a trained (non-zero) alpha branch, the features depend on the mask
    torch.nn.init.normal_(model.visual.conv1_alpha.weight, std=0.5)
    a = scorer.encode_image(images, alphas)
    b = scorer.encode_image(images, 1 - alphas)
    assert not torch.allclose(a, b, atol=1e-4)


def test_official_layout_loads_strictly(tiny_clip_name, tmp_path):
    model = tiny_model(tiny_clip_name)
    state = official_visual_state(model)
    torch.save(state, tmp_path / "alpha.pth")
    scorer = AlphaCLIP(model, open_clip.get_tokenizer(tiny_clip_name), 32)
    scorer.load_visual(read_state_dict(tmp_path / "alpha.pth"))
    loaded = scorer.model.visual.state_dict()
    torch.testing.assert_close(loaded["conv1_alpha.weight"], state["conv1_alpha.weight"])
    key = "transformer.resblocks.0.attn.in_proj_weight"
    torch.testing.assert_close(loaded[key], state[key.replace("in_proj_weight", "in_proj.weight")])
    del state["conv1_alpha.weight"]
    with pytest.raises(RuntimeError):
        scorer.load_visual(state)  # strict: a missing key is an error


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_checkpoints_never_execute_code(tmp_path):
    _Payload.target = str(tmp_path / "executed")
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"w": _Payload()}, fh)
    with pytest.raises(UserError, match="weights-only"):
        read_state_dict(tmp_path / "evil.pth")
    assert not (tmp_path / "executed").exists()


def test_evaluate_adds_aclip_columns_without_regenerating(tiny_clip_name, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--limit",
                "3",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    pngs = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*.png")}
    rows = (run / "report" / "table.csv").read_text()
    assert "aclip_fg" in rows
    model = tiny_model(tiny_clip_name, seed=3)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(tmp_path / "clip.safetensors"),
    )
    torch.save(official_visual_state(model), tmp_path / "alpha.pth")
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--alpha-clip",
                str(tmp_path / "alpha.pth"),
                "--clip",
                str(tmp_path / "clip.safetensors"),
                "--alpha-clip-variant",
                tiny_clip_name,
            ]
        )
        == 0
    )
    assert "3 jobs: 3 metric rows computed, 3 cached" in capsys.readouterr().err.replace("\n", " ")
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*.png")} == pngs
    assert main(["report", str(run)]) == 0
    import pandas as pd

    table = pd.read_csv(run / "report" / "table.csv")
    overall = table[(table.part == "all")].set_index("metric")
    assert overall.loc["aclip_fg", "n"] == 3 and -1 <= overall.loc["aclip_fg", "mean"] <= 1
    # identity: the background of source and edit are the same image -> cosine 1
    assert overall.loc["aclip_bg", "mean"] == pytest.approx(1.0, abs=1e-5)
    manifest = json.loads((run / "metrics_manifest.json").read_text())
    assert manifest["aclip"]["available"] and "text_rule" in manifest["aclip"]["manifest"]


def test_missing_checkpoint_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("PARTEDIT_BENCH_ALPHA_CLIP", raising=False)
    with pytest.raises(UserError, match="no Alpha-CLIP checkpoint"):
        AlphaCLIP.load(None, None)
    with pytest.raises(UserError, match="checkpoint not found"):
        AlphaCLIP.load(
            str(tmp_path / "nope.pth"), str(tmp_path / "nope.safetensors"), variant="ViT-B/16"
        )
