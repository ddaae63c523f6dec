"""`partedit-bench token-study`: the paper's token studies at toy scale (tiny-sd, a few training
steps): what each writes, that the figure draws the rows' aggregates, and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from partedit_bench.cli import main

PART = "humanoid-head"
TOY = ["--backbone", "tiny-sd", "--part", PART, "--steps", "3", "--pool", "6",
       "--heldout", "3", "--images", "3", "--seeds", "2"]  # fmt: skip


def study(kind, out, *extra):
    assert main(["token-study", kind, *TOY, *extra, "--output", str(out)]) == 0
    frame = pd.read_csv(out / f"token_{kind}.csv")
    drawn = pd.read_csv(out / f"token_{kind}_summary.csv")
    for ext, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF")):
        assert (out / f"token_{kind}.{ext}").read_bytes()[: len(magic)] == magic
    return frame, drawn


def test_images_study_draws_the_mean_and_spread_over_seeds(tmp_path):
    from partedit_bench.data.suites import load_suite

    frame, drawn = study("images", tmp_path, "--counts", "1,3")
    assert list(frame.images) == [1, 1, 3, 3] and list(frame.seed) == [0, 1, 0, 1]
    pool = [s.id for s in load_suite("partworld-train").samples if s.part_token == PART][:6]
    held = set(frame.heldout_ids[0].split())
    assert len(held) == 3 and not held & set(pool)
    assert frame.heldout_ids.nunique() == 1  # the same held-out images for every point
    for ids, n in zip(frame.train_ids, frame.images, strict=True):
        assert len(ids.split()) == n and set(ids.split()) <= set(pool)
    assert frame[frame.images == 1].train_ids.nunique() == 2  # the seed picks the images
    expected = frame.groupby("images").miou.agg(["mean", "std"])
    assert list(drawn.images) == [1, 3]
    assert drawn["mean"].tolist() == pytest.approx(expected["mean"].tolist(), abs=1e-12)
    assert drawn["std"].tolist() == pytest.approx(expected["std"].tolist(), abs=1e-12)
    assert frame.miou.between(0, 1).all()


def test_layers_study_scores_every_cross_attention_layer(tmp_path):
    from partedit_bench.engine.attention import cross_attention_layers
    from partedit_bench.engine.backbones import load_backbone

    frame, drawn = study("layers", tmp_path)
    names = cross_attention_layers(load_backbone("tiny-sd").unet)
    assert list(frame.layer) == names and list(drawn.layer) == names
    assert drawn["mean"].tolist() == frame.miou.tolist()
    assert set(frame["map"]) == {"16x16", "8x8", "4x4"}
    assert frame.all_layers_miou.nunique() == 1


def test_subsets_and_time_studies(tmp_path):
    frame, drawn = study("subsets", tmp_path / "s")
    assert len(frame) == 2 and (frame.images == 3).all() and frame.train_ids.nunique() == 2
    assert drawn["mean"].tolist() == frame.miou.tolist()
    frame, drawn = study("time", tmp_path / "t", "--layer-sets", "1,decoder,all")
    assert list(frame.layer_set.astype(str)) == ["1", "decoder", "all"]
    assert list(frame.layers) == [1, 6, 10]  # tiny-sd: 6 decoder, 10 cross-attention layers
    assert (frame.train_s > 0).all() and drawn["mean"].tolist() == frame.train_s.tolist()


@pytest.mark.parametrize(
    "extra, says",
    [
        (["shapes"], "unknown token study 'shapes'"),
        (["images", "--counts", "1,9"], "--counts 9 is more than the --pool of 6"),
        (["images", "--counts", "1,x"], "--counts expects integers"),
        (["time", "--layer-sets", "1,99"], "the UNet has 6 decoder cross-attention layers"),
        (["time", "--layer-sets", "first"], "'first' is not N, decoder or all"),
        (["layers", "--pool", "20"], "has 20 images; --pool 20 leaves none held out"),
        (["layers", "--part", "wing"], "unknown part token 'wing'"),
    ],
)
def test_bad_study_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, says):
    out = tmp_path / "out"
    kind, *rest = extra
    assert main(["token-study", kind, *TOY, *rest, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err, err
    assert not out.exists() or not any(out.iterdir())
