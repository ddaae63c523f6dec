"""PartWorld: deterministic, exact masks, true edits confined to the edit region."""

from __future__ import annotations

import numpy as np
import pytest

from partedit_bench.data import partworld
from partedit_bench.data.schema import CANONICAL_PARTS, load_image, load_mask
from partedit_bench.data.suites import partworld_samples


def render_pair(seed: int, index: int, part: str, resolution: int):
    rng = np.random.default_rng([seed, index])
    scene = partworld.sample_scene(rng)
    target, fields = partworld.sample_edit(scene, part, rng)
    return partworld.render(scene, resolution), partworld.render(target, resolution), fields


def test_same_seed_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "a"))
    spec = {"type": "partworld", "seed": 3, "count": 6, "resolution": 96}
    first = partworld_samples(spec)
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path / "b"))
    second = partworld_samples(spec)
    for a, b in zip(first, second, strict=True):
        assert a.to_dict() | {"original_image": "", "gt_mask": "", "extra": {}} == b.to_dict() | {
            "original_image": "",
            "gt_mask": "",
            "extra": {},
        }
        for key in ("original_image", "gt_mask"):
            with open(getattr(a, key), "rb") as fa, open(getattr(b, key), "rb") as fb:
                assert fa.read() == fb.read()
    # sample i does not depend on the suite size
    assert partworld_samples({**spec, "count": 2})[1].prompt_original == first[1].prompt_original


@pytest.mark.parametrize("part", list(partworld.CLASS_PARTS["humanoid"]))
@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_true_edit_changes_only_the_edit_region(part, resolution):
    for index in range(6):
        (src, shapes), (dst, dst_shapes), fields = render_pair(0, index, part, resolution)
        region = partworld.part_mask(shapes, part) | partworld.part_mask(dst_shapes, part)
        changed = (src != dst).any(axis=-1)
        assert changed.any(), "an edit must change something"
        assert not (changed & ~region).any()
        assert len(fields["p2p_prompt"].split()) == len(fields["p2p_template"].split())
        assert f"<{part}>" in fields["prompt_changed"] and part in CANONICAL_PARTS


def test_masks_are_exact_pixel_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_CACHE", str(tmp_path))
    for sample in partworld_samples({"type": "partworld", "seed": 0, "count": 4, "resolution": 64}):
        image = load_image(sample.original_image)
        mask = load_mask(sample.gt_mask, image.size)
        target = np.asarray(load_image(sample.extra["gt_edited_image"]))
        assert mask.any() and not mask.all()
        assert not ((np.asarray(image) != target).any(-1) & ~mask).any()
