"""Mask sources: Appendix P's selection rule on hand-made candidates, the polygon refinement, the
tiny Grounded-SAM end to end, the mask cache and its invalidation, and the methods' option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from partedit_bench.cli import main
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.engine import mask_sources
from partedit_bench.engine.mask_sources import (
    cached_mask,
    check_source,
    part_phrase,
    refine_polygon,
    select_mask,
)
from partedit_bench.errors import UserError


def box(top: int, left: int, size: int, shape=(20, 20)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    return m


def test_selection_keeps_the_smallest_of_each_group_then_the_largest_across_detections():
    # detection 1: a head (16 px) inside its body (64 px) and the whole image (400 px): one
    # overlapping group -> the head; plus a separate speck (1 px) -> its own group
    head, body, whole, speck = box(2, 2, 4), box(2, 2, 8), box(0, 0, 20), box(18, 18, 1)
    # detection 2: a second head (25 px) inside a second body: -> that head
    head2, body2 = box(10, 10, 5), box(9, 9, 9)
    chosen = select_mask([np.stack([body, whole, head, speck]), np.stack([body2, head2])])
    # kept: head (16), speck (1), head2 (25) -> the largest of them
    assert np.array_equal(chosen, head2)
    # overlap at most 0.1 is not a group: two disjoint candidates are both kept
    chosen = select_mask([np.stack([box(0, 0, 3), box(10, 10, 6)])])
    assert chosen.sum() == 36
    # IoU 16/64 = 0.25 > 0.1 groups them; with overlap 0.3 they are separate (the larger wins)
    assert select_mask([np.stack([head, body])]).sum() == 16
    assert select_mask([np.stack([head, body])], overlap=0.3).sum() == 64
    assert select_mask([np.zeros((3, 20, 20), bool)]) is None


def test_polygon_refinement_fills_holes_and_drops_specks():
    ring = box(4, 4, 10)
    ring[7:11, 7:11] = False  # a hole
    ring[0, 19] = True  # a speck far away
    refined = refine_polygon(ring)
    assert refined[8, 8] and not refined[0, 19]
    assert np.array_equal(refined, box(4, 4, 10))


def test_part_phrase_is_the_subject_and_the_part():
    sample = load_suite("partworld").samples[3]
    assert part_phrase(sample) == f"{sample.subject} {sample.part}".strip()


def test_unknown_sources_and_missing_weights_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not one of tokens, gt"):
        check_source("grounded-sm", "partedit.mask_source")
    monkeypatch.setenv("PARTEDIT_BENCH_GROUNDING_DINO", str(tmp_path / "no-dino"))
    with pytest.raises(UserError) as info:
        mask_sources.GroundedSam.load()
    text = str(info.value)
    assert "\n" not in text and "no-dino" in text and "hf download" in text


def test_tiny_grounded_sam_masks_are_cached_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    sample = load_suite("partworld").samples[3]
    image = load_image(sample.original_image)
    source = mask_sources.load_source("tiny-grounded-sam")
    assert source.random_weights
    calls = []
    real_call = type(source).__call__

    def counting(self, s, img):
        calls.append(s.id)
        return real_call(self, s, img)

    monkeypatch.setattr(type(source), "__call__", counting)
    first = cached_mask(source, sample, image)
    assert first.shape == (image.size[1], image.size[0]) and first.dtype == bool
    assert np.array_equal(cached_mask(source, sample, image), first) and len(calls) == 1
    # another checkpoint, another query or another image: computed again
    source.identity = {**source.identity, "weights": "other"}
    cached_mask(source, sample, image)
    sample.part = "mane"
    cached_mask(source, sample, image)
    assert len(calls) == 3


def test_methods_take_a_mask_source_and_record_it(tmp_path, capsys):
    run = tmp_path / "run"
    methods = (
        "partedit[mask_source=gt],blended_latent[mask_source=tokens],"
        "blended_latent[mask_source=tiny-grounded-sam]"
    )
    args = ["run", "--backbone", "tiny-sd", "--methods", methods, "--limit", "2"]
    steps = ["--set", "partedit.steps=2", "--set", "blended_latent.steps=2"]
    capsys.readouterr()
    assert main([*args, *steps, "--output", str(run)]) == 0
    printed = capsys.readouterr()
    # variant names are text in the terminal table, not rich markup ([...] was eaten)
    assert "partedit[mask_source=gt,steps=2]†" in printed.out + printed.err
    records = {
        p.parent.parent.name: json.loads(p.read_text())
        for p in run.glob("*/*/*__s0.json")
        if not p.name.endswith(".metrics.json")
    }
    gt = records["partedit[mask_source=gt,steps=2]"]
    assert gt["uses_gt_mask"] and gt["extras"]["mask_source"] == "gt"
    tokens = records["blended_latent[mask_source=tokens,steps=2]"]
    assert not tokens["uses_gt_mask"] and tokens["extras"]["mask_source"] == "tokens"
    sam = records["blended_latent[mask_source=tiny-grounded-sam,steps=2]"]
    assert not sam["uses_gt_mask"] and sam["extras"]["mask_source"] == "tiny-grounded-sam"
    # the GT-mask PartEdit reports the GT mask as its blend mask: mask_iou is exactly 1
    rows = list((run / "partedit[mask_source=gt,steps=2]").glob("*/*.pixel-*.metrics.json"))
    assert rows and all(json.loads(r.read_text())["values"]["mask_iou"] == 1.0 for r in rows)
    # the gallery shows the blend mask on the source with the GT part's outline in green
    from PIL import Image

    from partedit_bench.data.masks import outline
    from partedit_bench.data.schema import load_mask

    page = (run / "report" / "gallery.html").read_text()
    data = json.loads(page.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert data["reference"] == data["variants"][0] == "partedit[mask_source=gt,steps=2]†"
    sample = load_suite("partworld").samples[0]
    gt = load_mask(sample.gt_mask, load_image(sample.original_image).size)
    shown = [p for p in (run / "report" / "gallery").glob(f"{sample.id}_mask*.png")]
    assert shown and all(p.name in page for p in shown)
    for path in shown:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        green = np.all(pixels == (0, 255, 0), axis=-1)
        assert np.array_equal(green, outline(gt))


def test_a_mask_folder_source(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "masks"
    folder.mkdir()
    sample = load_suite("partworld").samples[0]
    image = load_image(sample.original_image)
    mask = np.zeros((image.size[1], image.size[0]), np.uint8)
    mask[:8, :8] = 255
    Image.fromarray(mask).save(folder / f"{sample.id}.png")
    run = tmp_path / "run"
    method = f"partedit[mask_source={folder},steps=2]"
    args = ["run", "--methods", method, "--backbone", "tiny-sd", "--limit", "1"]
    assert main([*args, "--output", str(run)]) == 0
    (record,) = [
        json.loads(p.read_text())
        for p in run.glob("*/*/*__s0.json")
        if not p.name.endswith(".metrics.json")
    ]
    assert record["status"] == "ok" and not record["uses_gt_mask"]
    stored = np.asarray(Image.open(run / next(run.glob("*/*/*_mask.png")).relative_to(run)))
    assert np.array_equal(stored > 127, mask > 0)


def test_localize_scores_every_source_and_tokens_match_the_jobs_mask_iou(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["--backbone", "tiny-sd", "--limit", "3", "--set", "partedit.steps=2"]
    assert main(["run", "--methods", "partedit", *args, "--output", str(run)]) == 0
    out = tmp_path / "loc"
    sources = "tokens,gt,tiny-grounded-sam"
    assert main(["localize", *args, "--sources", sources, "--output", str(out)]) == 0
    table = pd.read_csv(out / "localization.csv")
    assert list(table.columns) == ["source", "part", "n", "iou", "ci_low", "ci_high"]
    gt = table[(table.source == "gt") & (table.part == "all")].iloc[0]
    assert gt.iou == 1.0 and gt.n == 3
    per_sample = pd.read_csv(out / "localization_samples.csv")
    tokens = per_sample[per_sample.source == "tokens"].set_index("sample_id").iou
    jobs = {}
    for row in run.glob("partedit*/*/*__s0.pixel-*.metrics.json"):
        jobs[row.name.split("__s0")[0]] = json.loads(row.read_text())["values"]["mask_iou"]
    assert set(jobs) == set(tokens.index)
    for sample_id, value in jobs.items():
        assert tokens[sample_id] == pytest.approx(value, abs=1e-12), sample_id
    manifest = json.loads((out / "localization.json").read_text())
    assert manifest["sources"]["tiny-grounded-sam"]["random_weights"] is True
    assert "random weights" in (out / "localization.md").read_text()
    assert (out / "figure27.png").stat().st_size > 0
    assert len(list((out / "masks" / "tokens").glob("*.png"))) == 3
    # results are replaced only with --overwrite
    assert main(["localize", *args, "--sources", "gt", "--output", str(out)]) == 2


def test_a_method_unavailable_here_is_still_recorded_as_skipped(tmp_path):
    """partworld-sd has no InstructPix2Pix or inpainting checkpoint: those rows are skipped
    (their GT-mask flag from the class), the run goes on."""
    run = tmp_path / "run"
    args = ["run", "--methods", "identity,ip2p,sdxl_inpaint", "--backbone", "partworld-sd"]
    assert main([*args, "--limit", "1", "--output", str(run)]) == 0
    records = {
        p.parent.parent.name: json.loads(p.read_text())
        for p in run.glob("*/*/*__s0.json")
        if not p.name.endswith(".metrics.json")
    }
    # the backbone's default config adds its partedit[mask_source=gt] row only with partedit
    assert set(records) == {"identity", "ip2p", "sdxl_inpaint"}
    assert records["ip2p"]["status"] == "skipped" and not records["ip2p"]["uses_gt_mask"]
    assert (
        records["sdxl_inpaint"]["status"] == "skipped" and records["sdxl_inpaint"]["uses_gt_mask"]
    )


def test_tiny_sam3_gives_a_mask_of_the_image_size(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    sample = load_suite("partworld").samples[1]
    image = load_image(sample.original_image)
    source = mask_sources.load_source("tiny-sam3")
    assert source.random_weights and source.identity["source"] == "tiny-sam3"
    mask = cached_mask(source, sample, image)
    assert mask.shape == (image.size[1], image.size[0]) and mask.dtype == bool


def test_localize_compares_token_paddings_as_a_grid_of_sources(tmp_path, monkeypatch, capsys):
    """`tokens[padding=bg|sot|zero]` (Fig. 15): one source per padding, each PartEdit's token
    mask at that option (bg is the default: the same masks as `tokens`); a value or key the
    method does not have is one line before anything runs."""
    import pandas as pd

    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "cache"))
    args = ["--backbone", "tiny-sd", "--limit", "2", "--set", "partedit.steps=2"]
    out = tmp_path / "loc"
    sources = "tokens,tokens[padding=bg|sot|zero]"
    assert main(["localize", *args, "--sources", sources, "--output", str(out)]) == 0
    table = pd.read_csv(out / "localization.csv")
    names = ["tokens", "tokens[padding=bg]", "tokens[padding=sot]", "tokens[padding=zero]"]
    assert list(table[table.part == "all"].source) == names
    per_sample = pd.read_csv(out / "localization_samples.csv").set_index(["source", "sample_id"])
    assert per_sample.loc["tokens"].iou.equals(per_sample.loc["tokens[padding=bg]"].iou)
    for name, padding in zip(names[1:], ("bg", "sot", "zero"), strict=True):
        identity = json.loads((out / "localization.json").read_text())["sources"][name]
        assert identity["options"]["padding"] == padding and identity["options"]["steps"] == 2
        masks = sorted((out / "masks" / f"tokens_padding_{padding}").glob("*.png"))
        assert len(masks) == 2
    capsys.readouterr()
    for bad, says in (
        ("tokens[padding=bg|nope]", "must be one of: bg, sot, eot, zero, context"),
        ("tokens[paddin=bg]", "has no option 'paddin' (did you mean: padding"),
        ("tokens[padding=bg|bg]", "lists a value twice"),
    ):
        assert main(["localize", *args, "--sources", bad, "--output", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and "\n" not in err, err
        assert not (tmp_path / "x").exists()
