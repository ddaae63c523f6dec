"""PartWorld: deterministic, exact masks, true edits confined to the edit region."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from partedit_bench.data import partworld
from partedit_bench.data.generated import part_schedule, partworld_samples
from partedit_bench.data.schema import CANONICAL_PARTS, load_image, load_mask


def render_pair(index: int, part: str, resolution: int, correlation: float = 0.5):
    rng = np.random.default_rng([0, 0, index])
    class_name = partworld.PART_CLASS[part]
    scene = partworld.sample_scene(rng, class_name, correlation)
    target, fields = partworld.sample_edit(scene, part, rng)
    src, shapes = partworld.render(scene, resolution)
    dst, dst_shapes = partworld.render(target, resolution)
    region = partworld.part_mask(shapes, part, class_name) | partworld.part_mask(
        dst_shapes, part, class_name
    )
    return src, dst, region, fields


def test_same_seed_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "a"))
    spec = {"type": "partworld", "seed": 3, "count": 8, "resolution": 96}
    first = partworld_samples(spec)
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "b"))
    second = partworld_samples(spec)
    paths = {"original_image": "", "gt_mask": "", "extra": {}}
    for a, b in zip(first, second, strict=True):
        assert a.to_dict() | paths == b.to_dict() | paths
        for x, y in (
            (a.original_image, b.original_image),
            (a.gt_mask, b.gt_mask),
            (a.extra["gt_edited_image"], b.extra["gt_edited_image"]),
        ):
            with open(x, "rb") as fa, open(y, "rb") as fb:
                assert fa.read() == fb.read()
    # sample i does not depend on the suite size
    assert partworld_samples({**spec, "count": 2})[1].prompt_original == first[1].prompt_original


@pytest.mark.parametrize("part", CANONICAL_PARTS)
@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_true_edit_changes_only_the_edit_region(part, resolution):
    kinds = set()
    for index in range(12):
        src, dst, region, fields = render_pair(index, part, resolution)
        changed = (src != dst).any(axis=-1)
        assert changed.any(), "an edit must change something"
        assert not (changed & ~region).any()
        assert len(fields["p2p_prompt"].split()) == len(fields["p2p_template"].split())
        assert f"<{part}>" in fields["prompt_changed"]
        assert fields["prompt_changed"].replace(f"<{part}>", "X") != fields["prompt_original"]
        kinds.add(fields["edit_kind"])
    assert "color" in kinds


def test_shape_edits_use_the_union_of_both_shapes():
    for index in range(40):
        src, dst, region, fields = render_pair(index, "animal-head", 128)
        if fields["edit_kind"] == "shape":  # horns grow outside the old head
            rng = np.random.default_rng([0, 0, index])
            scene = partworld.sample_scene(rng, "quadruped", 0.5)
            _, shapes = partworld.render(scene, 128)
            old = partworld.part_mask(shapes, "animal-head", "quadruped")
            assert (region & ~old).any()
            return
    pytest.fail("no shape edit among 40 samples")


def test_correlation_ties_caption_colors():
    def tied(rho):
        hits = 0
        for i in range(200):
            a = partworld.sample_scene(np.random.default_rng([1, i]), "car", rho).attrs
            hits += a["hood"] == a["body"]
        return hits / 200

    assert tied(1.0) == 1.0 and tied(0.0) == 0.0 and 0.3 < tied(0.5) < 0.7


def test_paper_proportions_and_train_split_is_disjoint(tmp_path, monkeypatch):
    counts = collections.Counter(
        partworld.PART_CLASS[p] for p in part_schedule(list(partworld.PART_CLASS), 65)
    )
    assert counts == {"quadruped": 25, "humanoid": 20, "chair": 10, "car": 10}
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path))
    spec = {"type": "partworld", "seed": 0, "count": 14, "resolution": 32}
    evaluation = partworld_samples(spec)
    train = partworld_samples({**spec, "split": "train"})
    assert collections.Counter(s.part_token for s in train) == {p: 2 for p in CANONICAL_PARTS}
    eval_bytes = {open(s.original_image, "rb").read() for s in evaluation}
    assert not eval_bytes & {open(s.original_image, "rb").read() for s in train}
    assert not {s.id for s in evaluation} & {s.id for s in train}


def test_masks_are_exact_pixel_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path))
    for sample in partworld_samples({"type": "partworld", "seed": 0, "count": 7, "resolution": 64}):
        image = load_image(sample.original_image)
        mask = load_mask(sample.gt_mask, image.size)
        target = np.asarray(load_image(sample.extra["gt_edited_image"]))
        assert mask.any() and not mask.all()
        assert not ((np.asarray(image) != target).any(-1) & ~mask).any()
