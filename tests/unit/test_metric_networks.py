"""PIE-Bench's and MagicBrush's network metrics: the reference code's numbers on fixed inputs
(measured by benchmarks/parity/pie_bench_metrics.py against cure-lab/PnPInversion's own
MetricsCalculator, see partedit_bench/metrics/README.md), independent formulas, and the
evaluate / report / list plumbing on tiny random networks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from partedit_bench.cli import main
from partedit_bench.metrics import METRICS
from partedit_bench.metrics import networks as N

#: PIE-Bench's MetricsCalculator on the parity harness's inputs with `--networks random`.
REFERENCE = {
    "structure_distance": 0.183710411,
    "lpips_bg": 0.00183011324,
    "clip_whole": 25.0093613,
    "clip_edited": 33.5763855,
}


def test_pie_metrics_equal_the_reference_codes_numbers():
    from benchmarks.parity.pie_bench_metrics import PROMPT, inputs

    nets = N.load_networks(["pie"], "random")
    source, edit, mask = inputs()
    a, b = np.asarray(source) / 255.0, np.asarray(edit) / 255.0
    ours = {
        "structure_distance": N.structure_distance(nets.dino_b8, a, b),
        "lpips_bg": N.lpips_bg(nets.lpips, a, b, mask),
        "clip_whole": N.clip_score(nets.clip_l14, b, PROMPT),
        "clip_edited": N.clip_score(nets.clip_l14, b, PROMPT, mask),
    }
    for name, value in REFERENCE.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert N.structure_distance(nets.dino_b8, a, a) == 0.0
    assert N.lpips_bg(nets.lpips, a, a, mask) == 0.0


def test_network_metrics_against_independent_formulas():
    """The structure distance from keys computed by hand (the block's own LayerNorm and qkv
    weights on its input), CLIP-I and CLIP-T as cosines of the model's own embeddings."""
    nets = N.load_networks(["pie", "magicbrush"], "tiny")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 40, 3)) / 255.0
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1).round(3)
    vit = nets.dino_b8
    inputs = []
    handle = vit.blocks[-1].register_forward_pre_hook(lambda m, args: inputs.append(args[0]))

    def by_hand(image):
        from torchvision.transforms import functional as TF

        x = torch.from_numpy(np.round(image * 255).astype(np.float32)).permute(2, 0, 1)
        x = TF.normalize(TF.resize(x, 224, max_size=480, antialias=True), N.IMAGENET_MEAN,
                         N.IMAGENET_STD)  # fmt: skip
        x = x[:, : x.shape[1] // 8 * 8, : x.shape[2] // 8 * 8]
        inputs.clear()
        with torch.no_grad():
            vit(x[None])
            block = vit.blocks[-1]
            dim = block.attn.qkv.in_features
            keys = block.attn.qkv(block.norm1(inputs[0]))[0, :, dim : 2 * dim]
        unit = keys / keys.norm(dim=1, keepdim=True)
        return unit @ unit.T

    expected = float(((by_hand(a) - by_hand(b)) ** 2).mean())
    handle.remove()
    assert N.structure_distance(vit, a, b) == pytest.approx(expected, rel=1e-5)
    model, processor = nets.clip_b32
    with torch.no_grad():
        pixels = processor(images=[np.round(b * 255).astype(np.uint8)], return_tensors="pt")
        image = model.get_image_features(**pixels)
        image = getattr(image, "pooler_output", image)[0]
        text = model.get_text_features(**processor(text=["a red car"], return_tensors="pt"))
        text = getattr(text, "pooler_output", text)[0]
    cosine = float(image @ text / image.norm() / text.norm())
    assert N.clip_t(nets.clip_b32, b, "a red car") == pytest.approx(cosine, abs=1e-6)
    with torch.no_grad():
        pixels_a = processor(images=[np.round(a * 255).astype(np.uint8)], return_tensors="pt")
        other = model.get_image_features(**pixels_a)
        other = getattr(other, "pooler_output", other)[0]
    cosine = float(image @ other / image.norm() / other.norm())
    assert N.clip_i(nets.clip_b32, b, a) == pytest.approx(cosine, abs=1e-6)
    assert N.clip_i(nets.clip_b32, b, b) == pytest.approx(1.0, abs=1e-6)
    assert N.dino_i(nets.dino_s16, a, a) == pytest.approx(1.0, abs=1e-6)

    def cls_by_hand(image):  # the CLS token of the final norm, through timm's feature API
        from torchvision.transforms import functional as TF

        x = torch.from_numpy(np.round(image * 255).astype(np.float32) / 255).permute(2, 0, 1)
        x = TF.resize(x, [224, 224], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        x = TF.normalize(x, N.IMAGENET_MEAN, N.IMAGENET_STD)
        with torch.no_grad():
            return nets.dino_s16.forward_features(x[None])[0, 0]

    ca, cb = cls_by_hand(a), cls_by_hand(b)
    cosine = float(ca @ cb / ca.norm() / cb.norm())
    assert N.dino_i(nets.dino_s16, b, a) == pytest.approx(cosine, abs=1e-6)
    assert -1.0 <= N.dino_i(nets.dino_s16, a, b) <= 1.0


def test_evaluate_computes_a_group_on_an_existing_run_and_report_selects_it(tmp_path, capsys):
    from tests.helpers import IDENTITY_RUN

    run = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "2", "--output", str(run)]) == 0
    capsys.readouterr()
    args = ["evaluate", str(run), "--group", "pie,magicbrush", "--networks", "tiny"]
    assert main(args) == 0
    manifest = json.loads((run / "metrics_manifest.json").read_text())
    for group in ("pie", "magicbrush"):
        assert manifest[group]["available"] and manifest[group]["manifest"]["random_weights"]
    rows = [json.loads(p.read_text())["values"] for p in run.rglob("*.pie-*.metrics.json")]
    assert len(rows) == 2
    for values in rows:  # identity: the edit is the source
        assert values["structure_distance"] == 0.0 and values["lpips_bg"] == 0.0
        assert values["clip_whole"] >= 0.0
    brush = [json.loads(p.read_text())["values"] for p in run.rglob("*.magicbrush-*.metrics.json")]
    assert len(brush) == 2 and all(v["clip_i"] is not None for v in brush)  # PartWorld: true edits
    assert main(args) == 0
    assert "0 metric rows computed, 4 cached" in capsys.readouterr().err  # (the console: stderr)
    assert main(["report", str(run), "--metrics", "psnr_bg,structure_distance,clip_i"]) == 0
    table = pd.read_csv(run / "report" / "table.csv")
    assert set(table.metric) == {"psnr_bg", "structure_distance", "clip_i"}
    assert (
        table[(table.metric == "structure_distance") & (table.part == "all")]["mean"].iloc[0] == 0
    )


def test_list_metrics_and_bad_groups(capsys):
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    for name in ("lpips_bg", "structure_distance", "mse_bg", "clip_whole", "clip_edited",
                 "clip_i", "clip_t", "dino_i", "l1", "psnr_bg", "aclip_fg"):  # fmt: skip
        assert name in out, name
    from partedit_bench.metrics import GROUPS

    assert {m.group for m in METRICS.values()} == set(GROUPS)
    assert main(["evaluate", "/nonexistent", "--group", "pi"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown metric group 'pi' (did you mean: pie" in err and "\n" not in err


def test_missing_weights_are_one_line(monkeypatch):
    """No cached DINO and no hub here: one sentence naming the checkpoint and the fetch."""
    from partedit_bench.errors import UserError

    monkeypatch.setattr("partedit_bench.metrics.alpha_clip._hub_reachable", lambda *a: False)
    with pytest.raises(UserError, match=r"timm/vit_small_patch16_224\.dino .*huggingface-cli"):
        N.load_networks(["magicbrush"], "real")
