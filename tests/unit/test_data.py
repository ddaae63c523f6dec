"""Suites as data: validation, mask formats, build-synth, and the importers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.data.masks import polygons_to_mask, rle_string_to_counts, rle_to_mask
from partedit_bench.data.parts import canonical_part
from partedit_bench.data.schema import CANONICAL_PARTS, load_mask
from partedit_bench.data.suites import available_suites, load_suite
from partedit_bench.data.validate import validate_suite
from tests.helpers import IDENTITY_RUN

SHIPPED = ["partworld", "partworld-512", "partworld-train", "partedit-synth", "partedit-real-mini"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_suite_validates_and_has_a_readme(name):
    assert name in available_suites()
    count, problems = validate_suite(name)
    assert problems == [] and count > 0
    assert (available_suites()[name].parent / "README.md").is_file()


def test_a_broken_copy_reports_every_problem_at_once(tmp_path):
    src = available_suites()["partedit-real-mini"].parent
    copy = tmp_path / "broken"
    shutil.copytree(src, copy)
    data = yaml.safe_load((copy / "suite.yaml").read_text())
    samples = data["samples"]
    samples[0]["gt_mask"] = "masks/missing.png"
    Image.new("L", (10, 10), 255).save(copy / "masks" / "small.png")
    samples[1]["gt_mask"] = "masks/small.png"
    Image.new("L", (512, 512), 0).save(copy / "masks" / "empty.png")
    samples[2]["gt_mask"] = "masks/empty.png"
    samples[3]["prompt_changed"] = "a man with a robotic head"
    samples[4]["original_image"] = "photos/missing.png"
    gray = np.zeros((512, 512), np.uint8)
    gray[:10] = 128
    Image.fromarray(gray).save(copy / "masks" / "gray.png")
    samples[5]["gt_mask"] = "masks/gray.png"
    (copy / "suite.yaml").write_text(yaml.safe_dump(data))
    count, problems = validate_suite(str(copy / "suite.yaml"))
    assert count == 12 and len(problems) == 6, problems
    text = "\n".join(problems)
    for expected in (
        "mask not found",
        "is 10x10 but its image is 512x512",
        "is empty",
        "lacks the part token <humanoid-head>",
        "image not found",
        "is not binary",
    ):
        assert expected in text, expected
    assert main(["data", "validate", str(copy / "suite.yaml")]) == 1
    samples[6]["part_token"] = "humanoid-hed"
    samples[7]["split"] = "test"
    (copy / "suite.yaml").write_text(yaml.safe_dump(data))
    _, problems = validate_suite(str(copy / "suite.yaml"))
    assert any("humanoid-hed" in p for p in problems) and any("split" in p for p in problems)


def encode_rle_string(counts: list[int]) -> str:
    """COCO's compressed RLE string, written from the maskApi.c description (test reference)."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_coco_rle_both_forms_and_polygons():
    rng = np.random.default_rng(0)
    mask = rng.random((13, 17)) > 0.6
    flat = mask.T.reshape(-1)  # column-major
    counts, value, run = [], False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    assert rle_string_to_counts(encode_rle_string(counts)) == counts
    np.testing.assert_array_equal(rle_to_mask({"size": [13, 17], "counts": counts}), mask)
    np.testing.assert_array_equal(
        rle_to_mask({"size": [13, 17], "counts": encode_rle_string(counts)}), mask
    )
    square = polygons_to_mask([[2, 2, 8, 2, 8, 6, 2, 6]], (12, 10))
    assert square[2:6, 2:8].all() and square.sum() == 6 * 4  # the square's area
    nested = polygons_to_mask([[[2, 2], [8, 2], [8, 6], [2, 6]]], (12, 10))
    np.testing.assert_array_equal(square, nested)
    pil = polygons_to_mask([[[2, 2], [8, 2], [8, 6], [2, 6]]], (12, 10), convention="pil")
    assert pil.sum() == 7 * 5 and (pil | square).sum() == pil.sum()  # boundary included
    triangle = polygons_to_mask([[0, 0, 100, 0, 0, 100]], (100, 100))
    assert abs(int(triangle.sum()) - 5000) <= 100


def files_suite(folder: Path, ids=("a", "b", "c"), size=(40, 30)) -> Path:
    (folder / "images").mkdir(parents=True)
    lines = []
    for i, sample_id in enumerate(ids):
        pixels = np.full((size[1], size[0], 3), 40 * i, np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{sample_id}.png")
        lines.append(
            json.dumps(
                {
                    "id": sample_id,
                    "split": "real",
                    "class_name": "cat",
                    "part": "head",
                    "part_token": "animal-head",
                    "prompt_original": "a cat",
                    "prompt_changed": "a cat with a golden <animal-head>",
                    "original_image": f"images/{sample_id}.png",
                    "gt_mask": "",
                }
            )
        )
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "suite.yaml").write_text("name: mine\nversion: 1\nsamples_file: samples.jsonl\n")
    return folder


def test_import_masks_from_png_coco_and_labelme(tmp_path, capsys):
    suite = files_suite(tmp_path / "suite")
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:20] = 255
    Image.fromarray(mask).save(pngs / "a.png")
    assert main(["data", "import-masks", str(suite), str(pngs)]) == 0
    coco = {
        "images": [{"id": 1, "file_name": "b.png", "width": 40, "height": 30}],
        "categories": [{"id": 3, "name": "head"}],
        "annotations": [
            {"image_id": 1, "category_id": 3, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
            {
                "image_id": 1,
                "category_id": 3,
                "segmentation": {"size": [30, 40], "counts": [600, 30, 570]},
            },
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert main(["data", "import-masks", str(suite), str(tmp_path / "coco.json")]) == 0
    labelme = tmp_path / "labelme"
    labelme.mkdir()
    (labelme / "c.json").write_text(
        json.dumps(
            {
                "imageWidth": 40,
                "imageHeight": 30,
                "shapes": [
                    {
                        "label": "head",
                        "shape_type": "polygon",
                        "points": [[20, 10], [30, 10], [30, 20], [20, 20]],
                    },
                    {
                        "label": "body",
                        "shape_type": "polygon",
                        "points": [[0, 25], [5, 25], [5, 29]],
                    },
                ],
            }
        )
    )
    assert main(["data", "import-masks", str(suite), str(labelme), "--label", "head"]) == 0
    samples = {s.id: s for s in load_suite(str(suite)).samples}
    np.testing.assert_array_equal(load_mask(samples["a"].gt_mask, (40, 30)), mask > 0)
    b = load_mask(samples["b"].gt_mask, (40, 30))
    assert b[:10, :10].all() and b[:, 20].sum() == 30 and b.sum() == 100 + 30
    c = load_mask(samples["c"].gt_mask, (40, 30))
    assert c[10:21, 20:31].all() and c.sum() == 121 and not c[25:, :6].any()  # LabelMe: PIL
    assert validate_suite(str(suite))[1] == []
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(wrong / "a.png")
    assert main(["data", "import-masks", str(suite), str(wrong)]) == 2
    assert "is 10x10 but its image is 40x30" in capsys.readouterr().err


def test_build_synth_records_the_backbone_and_resumes(tmp_path, capsys):
    out = tmp_path / "built"
    args = [
        "data",
        "build-synth",
        "--backbone",
        "tiny-sd",
        "--steps",
        "2",
        "--limit",
        "3",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    assert "3 samples still need a GT mask" in capsys.readouterr().err.replace("\n", " ")
    suite = load_suite(str(out / "suite.yaml"))
    assert suite.name == "partedit-synth@tiny-sd" and len(suite.samples) == 3
    assert suite.synthetic_source["backbone"] == "tiny-sd" and suite.is_synthetic_for("tiny-sd")
    assert not suite.is_synthetic_for("tiny-sdxl")
    for sample in suite.samples:
        assert Image.open(sample.original_image).size == (64, 64)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == stamps
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--suite",
                str(out / "suite.yaml"),
                "--output",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "have no GT mask" in capsys.readouterr().err
    masks = tmp_path / "masks"
    masks.mkdir()
    for sample in suite.samples:
        pixels = np.zeros((64, 64), np.uint8)
        pixels[16:48, 16:48] = 255
        Image.fromarray(pixels).save(masks / f"{sample.id}.png")
    assert main(["data", "import-masks", str(out), str(masks)]) == 0
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--suite",
                str(out / "suite.yaml"),
                "--output",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )


def hf_rows(split: str, count: int) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 255
        rows.append(
            {
                "id": i,
                "original_image": image,
                "partedit": image.rotate(90),
                "gt_mask": Image.fromarray(mask),
                "subject": "dog",
                "edit": "robotic",
                "part": "head",
                "class_name": "quadruped" if i % 2 else "biped",
                "prompt_original": "a photo of a dog",
                "prompt_changed": "a photo of a dog with a robotic "
                + ("<animal-head>" if i % 2 else "<biped_head>"),
                "p2p_prompt": "a photo of a dog with a normal head",
                "p2p_template": "a photo of a dog with a robotic head",
                "instructp2p_edit1": "make its head robotic",
                "instructp2p_edit2": "robot head",
                "instructp2p_edit3": "",
                "seed": 42 + i,
                "token_cls": "quadruped_head" if i % 2 else "biped_head",
            }
        )
    return rows


def test_import_hf_from_a_saved_dataset_and_score_its_own_output(tmp_path):
    import datasets

    data = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(hf_rows(split, n))
            for split, n in (("synth", 3), ("real", 2))
        }
    )
    data.save_to_disk(str(tmp_path / "hf"))
    out = tmp_path / "imported"
    assert (
        main(["data", "import-hf", str(tmp_path / "hf"), "--name", "peb", "--output", str(out)])
        == 0
    )
    suite = load_suite(str(out / "suite.yaml"))
    samples = {s.id: s for s in suite.samples}
    assert set(samples) == {"synth-0", "synth-1", "synth-2", "real-0", "real-1"}
    assert samples["synth-1"].part_token == "animal-head"
    assert samples["synth-0"].part_token == "humanoid-head"
    assert samples["synth-0"].prompt_changed.endswith("robotic <humanoid-head>")
    assert samples["real-1"].split == "real" and samples["real-1"].seed == 43
    assert samples["synth-0"].instructp2p_edit == ["make its head robotic", "robot head"]
    assert samples["synth-0"].extra["token_cls"] == "biped_head"
    assert Path(samples["synth-0"].extra["partedit"]).is_file()
    assert validate_suite(str(out / "suite.yaml"))[1] == []
    run = tmp_path / "run"
    assert (
        main(
            [
                "import-edits",
                "--suite",
                str(out / "suite.yaml"),
                "--from-field",
                "partedit",
                "--name",
                "partedit-official",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    assert main(["evaluate", str(run), "--metrics", "psnr_bg"]) == 0
    assert main(["report", str(run)]) == 0
    table = pd.read_csv(run / "report" / "table.csv")
    rows = table[(table.part == "all") & (table.metric == "psnr_bg")]
    assert set(rows.block) == {"synth (imported)", "real (imported)"}
    assert (rows.n > 0).all() and (rows["mean"] < 100).all()


def test_import_partimagenet_coco_json(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("n01.JPEG", "n02.JPEG"):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / name, format="PNG")
    data = {
        "images": [
            {"id": 1, "file_name": "n01.JPEG", "width": 30, "height": 20},
            {"id": 2, "file_name": "n02.JPEG", "width": 30, "height": 20},
        ],
        "categories": [
            {"id": 0, "name": "Quadruped Head", "supercategory": "Quadruped"},
            {"id": 1, "name": "Quadruped Body", "supercategory": "Quadruped"},
            {"id": 5, "name": "Car Body", "supercategory": "Car"},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 0, "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]]},
            {"image_id": 1, "category_id": 1, "segmentation": [[10, 1, 29, 1, 29, 19]]},
            {"image_id": 2, "category_id": 5, "segmentation": [[0, 0, 29, 0, 29, 19, 0, 19]]},
        ],
    }
    (tmp_path / "train.json").write_text(json.dumps(data))
    assert (
        main(
            [
                "data",
                "import-parts",
                str(tmp_path / "train.json"),
                "--images",
                str(images),
                "--output",
                str(tmp_path / "tokens"),
            ]
        )
        == 0
    )
    suite = load_suite(str(tmp_path / "tokens" / "suite.yaml"))
    assert sorted(s.part_token for s in suite.samples) == ["animal-head", "car-body"]
    head = next(s for s in suite.samples if s.part_token == "animal-head")
    assert load_mask(head.gt_mask, (30, 20)).sum() == 64  # the 8 x 8 square


def test_part_name_mapping():
    assert canonical_part("quadruped_head") == "animal-head"
    assert canonical_part("carhood_custom") == "car-hood"
    assert canonical_part("torso_custom") == "humanoid-torso"
    assert canonical_part("person", "head") == "humanoid-head"
    assert canonical_part("dog", "head") == "animal-head"
    assert canonical_part("<chair-seat>") == "chair-seat"
    assert canonical_part("boat", "hull") is None
    assert {canonical_part(p) for p in CANONICAL_PARTS} == set(CANONICAL_PARTS)


def test_identity_on_real_mini_gives_the_fixed_points(tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--suite",
                "partedit-real-mini",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    table = pd.read_csv(run / "report" / "table.csv")
    rows = table[(table.part == "all")].set_index("metric")
    assert rows.loc["psnr_bg", "mean"] == pytest.approx(100) and rows.loc["psnr_bg", "n"] == 12
    assert rows.loc["leakage", "mean"] == 0 and rows.loc["ssim_bg", "mean"] == pytest.approx(1)


def write_pascal_part(path: Path, objects: list[tuple[str, dict[str, np.ndarray]]]) -> None:
    """A .mat file in PASCAL-Part's layout: anno.{imname, objects(i).{class, parts(j).{part_name,
    mask}}}."""
    import scipy.io

    object_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    records = np.zeros((1, len(objects)), dtype=object_dtype)
    for i, (name, parts) in enumerate(objects):
        part_records = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
        for j, (part, mask) in enumerate(parts.items()):
            part_records[0, j] = (part, mask.astype(np.uint8))
        union = np.logical_or.reduce(list(parts.values())).astype(np.uint8)
        records[0, i] = (name, np.array([[1]]), union, part_records)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (path.stem, records)
    scipy.io.savemat(str(path), {"anno": anno})


def test_import_pascal_part_mat_files(tmp_path):
    (tmp_path / "Annotations_Part").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "JPEGImages" / "2008_01.jpg")

    def box(y0, y1, x0, x1):
        m = np.zeros((12, 16), bool)
        m[y0:y1, x0:x1] = True
        return m

    write_pascal_part(
        tmp_path / "Annotations_Part" / "2008_01.mat",
        [
            (
                "person",
                {
                    "head": box(0, 3, 0, 3),
                    "hair": box(0, 1, 0, 3),
                    "leye": box(1, 2, 3, 4),
                    "torso": box(3, 8, 0, 4),
                    "llarm": box(3, 8, 4, 5),
                },
            ),
            (
                "dog",
                {"head": box(0, 2, 10, 12), "lear": box(0, 1, 12, 13), "torso": box(2, 5, 9, 15)},
            ),
            ("car", {"frontside": box(8, 10, 8, 12), "wheel_1": box(10, 12, 8, 10)}),
        ],
    )
    assert (
        main(
            [
                "data",
                "import-parts",
                str(tmp_path / "Annotations_Part"),
                "--images",
                str(tmp_path / "JPEGImages"),
                "--output",
                str(tmp_path / "pp"),
            ]
        )
        == 0
    )
    samples = {s.part_token: s for s in load_suite(str(tmp_path / "pp" / "suite.yaml")).samples}
    assert set(samples) == {
        "humanoid-head",
        "human-hair",
        "humanoid-torso",
        "animal-head",
        "car-body",
    }
    sums = {p: int(load_mask(s.gt_mask, (16, 12)).sum()) for p, s in samples.items()}
    assert sums == {
        "humanoid-head": 10,
        "human-hair": 3,
        "humanoid-torso": 20,
        "animal-head": 5,
        "car-body": 8,
    }


#: Text fields of published PartEdit-Bench rows, as a public third-party export of the dataset
#: gives them (ptan853/part-level-tdm-localization, core/data/partedit_subset/
#: pilot_manifest.json: its source_prompt / target_prompt are the dataset's prompt_original /
#: prompt_changed); v1.1's token_cls where the revision has it.
# The 20 published rows whose text fields a public third-party export gives
# (ptan853/part-level-tdm-localization, core/data/partedit_subset/pilot_manifest.json, which
# reads prompt_original, p2p_prompt and prompt_changed from Aleksandar/PartEdit-Bench): split,
# id, class_name, subject, part, edit, token_cls (v1.1, given here for a few rows to cover
# both revisions), prompt_original, p2p_prompt, prompt_changed. No public source shows
# p2p_template's text.
PUBLISHED_ROWS = [
    ('real', 0, 'humanoid_torso', 'robot', 'torso', 'armored', None,
     'a robot standing in a warehouse with boxes',
     'a robot with armored torso standing in a warehouse with boxes',
     'a armored standing in a warehouse with boxes'),
    ('real', 1, 'animal_head', 'dog', 'head', 'cat', None,
     'a dog running in the grass',
     'a dog with cat head running in the grass',
     'a cat running in the grass'),
    ('real', 2, 'chair', 'chair', 'seat', 'mesh', 'chair_custom',
     'a chair and table in front of a glass door',
     'a chair with mesh seat and table in front of a glass door',
     'a mesh and table in front of a glass door'),
    ('real', 3, 'animal_head', 'horse', 'head', 'cheetah', None,
     'a horse running in a field',
     'a horse with cheetah head running in a field',
     'a cheetah running in a field'),
    ('real', 4, 'carhood', 'toyota', 'carhood', 'rusted', None,
     'a white toyota avanza parked in front of a house',
     'a white toyota with rusted carhood avanza parked in front of a house',
     'a white rusted avanza parked in front of a house'),
    ('real', 5, 'animal_head', 'bear', 'head', 'dog', None,
     'a brown bear standing on a rock',
     'a brown bear with dog head standing on a rock',
     'a brown dog standing on a rock'),
    ('real', 6, 'animal_head', 'man', 'head', 'alien', None,
     'a man standing in a park wearing a green shirt',
     'a man with alien head standing in a park wearing a green shirt',
     'a alien standing in a park wearing a green shirt'),
    ('real', 7, 'chair', 'armchair', 'seat', 'leather', None,
     'a mahogany armchair',
     'a mahogany armchair with leather seat',
     'a mahogany leather'),
    ('real', 8, 'animal_head', 'dog', 'head', 'bear', 'quadruped_head',
     'a dog standing in a field with grass and water',
     'a dog with bear head standing in a field with grass and water',
     'a bear standing in a field with grass and water'),
    ('real', 9, 'carbody', 'ferrari', 'carbody', 'rusted', None,
     'ferrari 812 superfast by kimberly kim',
     'ferrari with rusted carbody 812 superfast by kimberly kim',
     'rusted 812 superfast by kimberly kim'),
    ('real', 10, 'animal_head', 'cow', 'head', 'dragon', None,
     'a cow standing on a street',
     'a cow with dragon head standing on a street',
     'a dragon standing on a street'),
    ('real', 11, 'human_hair', 'man', 'hair', 'curly_hair', None,
     'a man with a smile on his face',
     'a man with curly_hair hair with a smile on his face',
     'a curly_hair with a smile on his face'),
    ('real', 12, 'humanoid_torso', 'statue', 'torso', 'uniform', None,
     'a statue of an angel with wings on the ground',
     'a statue with uniform torso of an angel with wings on the ground',
     'a uniform of an angel with wings on the ground'),
    ('synth', 14, 'humanoid_torso', 'alien', 'torso', 'robot', None,
     'A alien at a gym',
     'A alien with robot torso at a gym',
     'A robot at a gym'),
    ('synth', 17, 'humanoid_torso', 'dinosaur', 'torso', 'robotic-parts', None,
     'A dinosaur at a museum',
     'A dinosaur with robotic-parts torso at a museum',
     'A robotic-parts at a museum'),
    ('synth', 22, 'humanoid_hair', 'boy', 'hair', 'Kinky', None,
     'A Portrait of boy at a park',
     'A Portrait of boy with Kinky hair at a park',
     'A Portrait of Kinky at a park'),
    ('synth', 26, 'humanoid_hair', 'man', 'hair', 'Curls', 'human_hair',
     'A Portrait of man at a house',
     'A Portrait of man with Curls hair at a house',
     'A Portrait of Curls at a house'),
    ('synth', 40, 'animal_head', 'bear', 'head', 'tiger', None,
     'A bear at a pool',
     'A bear with tiger head at a pool',
     'A tiger at a pool'),
    ('synth', 50, 'carhood', 'racing-car', 'car hood', 'black', 'carhood_custom',
     'A racing-car at a highway',
     'A racing-car with black car hood at a highway',
     'A black at a highway'),
    ('synth', 53, 'carhood', 'BMW', 'car hood', 'Destroyed', None,
     'A full front facing view of BMW car at a parking lot',
     'A full front facing view of BMW car with Destroyed car hood at a parking lot',
     'A full front facing view of Destroyed car at a parking lot'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("template_kind", "layout"),
    [("none", "save_to_disk"), ("aligned-source", "parquet"), ("none", "hub-cache-v1.1")],
)
def test_published_rows_import_validate_and_run(tmp_path, capsys, template_kind, layout):
    import datasets

    def template(p2p, edit, subject):
        # p2p_template's published text is unknown: absent, or (hypothetical) the word-aligned
        # unedited side of p2p_prompt; the importer must read the direction either way
        if template_kind == "none":
            return None
        return re.sub(rf"\b{re.escape(edit)}\b", subject.split()[-1], p2p)

    rng = np.random.default_rng(3)
    splits: dict[str, list[dict]] = {"synth": [], "real": []}
    for row_fields in PUBLISHED_ROWS:
        split, row_id, cls, subject, part, edit, token_cls, original, p2p, changed = row_fields
        image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        mask = np.zeros((64, 64), np.uint8)
        mask[16:40, 16:40] = 255
        row = {
            "id": row_id, "original_image": image, "partedit": image.rotate(90),
            "gt_mask": Image.fromarray(mask), "subject": subject, "edit": edit, "part": part,
            "class_name": cls, "prompt_original": original, "prompt_changed": changed,
            "p2p_prompt": p2p, "p2p_template": template(p2p, edit, subject), "seed": row_id,
        }  # fmt: skip
        row["token_cls"] = token_cls  # v1.1's column (None where the export gives none)
        splits[split].append(row)
    source, extra_args = tmp_path / "hf", []
    if layout != "hub-cache-v1.1":  # the main revision (v1.0) has no token_cls
        splits = {n: [{k: v for k, v in r.items() if k != "token_cls"} for r in rows]
                  for n, rows in splits.items()}  # fmt: skip
    if layout == "save_to_disk":
        data = datasets.DatasetDict(
            {name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}
        )
        data.save_to_disk(str(source))
    elif layout == "parquet":  # the dataset's own file names
        for name, rows in splits.items():
            _parquet(rows, source / "data" / f"{name}-00000-of-00001.parquet")
    else:  # a hub cache holding main (v1.0, no token_cls) and v1.1
        repo = source / "datasets--Aleksandar--PartEdit-Bench"
        for commit, keep_cls in (("1111aaaa", False), ("2222bbbb", True)):
            for name, rows in splits.items():
                kept = [{k: v for k, v in r.items() if keep_cls or k != "token_cls"} for r in rows]
                _parquet(kept, repo / "snapshots" / commit / "data" / f"{name}-0.parquet")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("1111aaaa")
        (repo / "refs" / "v1.1").write_text("2222bbbb")
        extra_args = ["--revision", "v1.1"]
    out = tmp_path / "imported"
    assert main(["data", "import-hf", str(source), *extra_args, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    printed = (captured.out + captured.err).replace("\n", " ")
    assert "labelled animal-head but its subject is 'man'" in printed  # reported, kept
    suite = load_suite(str(out / "suite.yaml"))
    samples = {s.id: s for s in suite.samples}
    assert len(samples) == len(PUBLISHED_ROWS)
    expected = {
        "real-6": ("animal-head", "a man with alien <animal-head> standing in a park"),
        "real-8": ("animal-head", "a dog with bear <animal-head> standing"),
        "real-2": ("chair-seat", "a chair with mesh <chair-seat> and table"),
        "real-4": ("car-hood", "a white toyota with rusted <car-hood> avanza"),
        "real-7": ("chair-seat", "a mahogany armchair with leather <chair-seat>"),
        "real-9": ("car-body", "ferrari with rusted <car-body> 812"),
        "real-11": ("human-hair", "a man with curly_hair <human-hair> with a smile"),
        "real-12": ("humanoid-torso", "a statue with uniform <humanoid-torso> of an angel"),
        "synth-26": ("human-hair", "A Portrait of man with Curls <human-hair> at a house"),
        "synth-50": ("car-hood", "A racing-car with black <car-hood> at a highway"),
        "synth-40": ("animal-head", "A bear with tiger <animal-head> at a pool"),
        "synth-53": ("car-hood", "A full front facing view of BMW car with Destroyed <car-hood>"),
    }
    for sample_id, (token, prompt) in expected.items():
        sample = samples[sample_id]
        assert sample.part_token == token, sample_id
        assert sample.prompt_changed.startswith(prompt), sample.prompt_changed
        # the dataset's own prompt_changed (the subject swapped) is kept beside it
        assert sample.extra["prompt_changed_dataset"] != sample.prompt_changed
    assert samples["synth-40"].extra["prompt_changed_dataset"] == "A tiger at a pool"
    # Prompt-to-Prompt goes from the unedited text to the dataset's edited p2p_prompt
    for sample in samples.values():
        assert sample.p2p_template == sample.extra["p2p_prompt_dataset"]
        assert sample.edit.lower() in sample.p2p_template.lower()
        assert not re.search(rf"\b{re.escape(sample.edit)}\b", sample.p2p_prompt)
    bear = samples["synth-40"]
    if template_kind == "none":
        assert bear.p2p_prompt == bear.prompt_original == "A bear at a pool"
    else:  # the aligned source: the Replace formulation, one word swapped
        assert bear.p2p_prompt == "A bear with bear head at a pool"
    assert samples["real-6"].extra["label_warning"]
    if layout == "hub-cache-v1.1":
        assert samples["synth-50"].extra["token_cls"] == "carhood_custom"
    assert validate_suite(str(out / "suite.yaml"))[1] == []
    # PartEdit's edit prompt gives back the dataset's edited words
    from partedit_bench.api import target_prompt
    from partedit_bench.methods.partedit.options import plain_prompt

    assert plain_prompt(bear) == "A bear with tiger head at a pool" == target_prompt(bear)
    run = tmp_path / "run"
    assert (
        main(
            ["run", "--methods", "identity,partedit,p2p", "--backbone", "tiny-sdxl",
             "--suite", str(out / "suite.yaml"), "--limit", "6", "--set", "partedit.steps=2",
             "--set", "p2p.steps=2", "--set", "p2p.null_text_inner_steps=1", "--output", str(run)]
        )
        == 0
    )  # fmt: skip
    assert (
        main(
            ["import-edits", "--suite", str(out / "suite.yaml"), "--from-field", "partedit",
             "--name", "partedit-official", "--output", str(run)]
        )
        == 0
    )  # fmt: skip
    assert main(["report", str(run)]) == 0


def test_import_hf_reads_01_masks_and_refuses_bad_rows_in_one_line(tmp_path, capsys):
    import datasets

    rows = hf_rows("synth", 1)
    rows[0]["gt_mask"] = Image.fromarray((np.asarray(rows[0]["gt_mask"]) > 0).astype(np.uint8))
    datasets.DatasetDict({"synth": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "hf01")
    )
    out = tmp_path / "imported"
    assert main(["data", "import-hf", str(tmp_path / "hf01"), "--output", str(out)]) == 0
    mask = load_mask(load_suite(str(out / "suite.yaml")).samples[0].gt_mask, (32, 32))
    assert mask.sum() == 12 * 12  # the 0/1 mask's part, not an empty mask
    for label, change in (
        ("seed", {"seed": "forty-two"}),
        ("unreadable image", {"original_image": {"bytes": b"\x89PNG not really", "path": None}}),
    ):
        bad = hf_rows("synth", 1)
        bad[0].update(change)
        data = datasets.Dataset.from_list(bad)  # broken bytes stay a {bytes, path} struct
        folder = tmp_path / f"bad-{label}"
        datasets.DatasetDict({"synth": data}).save_to_disk(str(folder))
        capsys.readouterr()
        code = main(["data", "import-hf", str(folder), "--output", str(tmp_path / label)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert ("not an integer" if label == "seed" else "unreadable image") in err, err


def test_import_hf_refuses_colliding_ids_and_leaves_nothing_behind(tmp_path, capsys):
    import datasets

    rows = hf_rows("synth", 2) + hf_rows("synth", 1)  # ids 0, 1, 0: two splits read as one
    datasets.DatasetDict({"synth": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "hf")
    )
    out = tmp_path / "imported"
    capsys.readouterr()
    code = main(["data", "import-hf", str(tmp_path / "hf"), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "sample id synth-0 again" in err and len(err.splitlines()) == 1, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    # an earlier import in that folder is kept whole when a new one fails
    good = tmp_path / "good"
    datasets.DatasetDict({"synth": datasets.Dataset.from_list(hf_rows("synth", 2))}).save_to_disk(
        str(good)
    )
    assert main(["data", "import-hf", str(good), "--output", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    args = ["data", "import-hf", str(tmp_path / "hf"), "--output", str(out), "--overwrite"]
    assert main(args) == 2  # fails midway: the earlier import stays whole
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "hf", "imported"]  # no staging


def _parquet(rows: list[dict], path: Path) -> Path:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def _imported(out: Path) -> dict:
    return {s.id: s for s in load_suite(str(out / "suite.yaml")).samples}


def test_import_hf_takes_splits_from_the_card_folders_names_or_split(tmp_path, capsys):
    synth, real = hf_rows("synth", 2), hf_rows("real", 1)
    # refs/convert/parquet: the split is the folder; ids overlap between splits
    conv = tmp_path / "conv"
    _parquet(synth, conv / "default" / "synth" / "0000.parquet")
    _parquet(real, conv / "default" / "real" / "0000.parquet")
    assert main(["data", "import-hf", str(conv), "--output", str(tmp_path / "a")]) == 0
    assert set(_imported(tmp_path / "a")) == {"synth-0", "synth-1", "real-0"}
    # a hub snapshot folder: its card's configs decide, whatever the file names
    snap = tmp_path / "snap"
    _parquet(synth, snap / "data" / "first.parquet")
    _parquet(real, snap / "data" / "second.parquet")
    (snap / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: synth\n"
        "    path: data/first*\n  - split: real\n    path: data/second*\n---\n# card\n"
    )
    assert main(["data", "import-hf", str(snap), "--output", str(tmp_path / "b")]) == 0
    assert _imported(tmp_path / "b")["real-0"].split == "real"
    # a renamed file says nothing: one line, nothing written; --split names it
    renamed = _parquet(real, tmp_path / "renamed" / "rows.parquet")
    capsys.readouterr()
    assert main(["data", "import-hf", str(renamed), "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell its split" in err and "--split" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()
    args = ["data", "import-hf", str(renamed), "--split", "real", "--output", str(tmp_path / "c")]
    assert main(args) == 0
    assert set(_imported(tmp_path / "c")) == {"real-0"}
    # several paths, one per split
    files = [conv / "default" / "synth" / "0000.parquet", tmp_path / "real-00000-of-00001.parquet"]
    _parquet(real, files[1])
    assert main(["data", "import-hf", *map(str, files), "--output", str(tmp_path / "d")]) == 0
    assert set(_imported(tmp_path / "d")) == {"synth-0", "synth-1", "real-0"}


def test_import_hf_single_split_save_to_disk_needs_its_split(tmp_path, capsys):
    import datasets

    datasets.Dataset.from_list(hf_rows("real", 2)).save_to_disk(str(tmp_path / "one"))
    capsys.readouterr()
    assert main(["data", "import-hf", str(tmp_path / "one"), "--output", str(tmp_path / "o")]) == 2
    assert "pass --split" in capsys.readouterr().err
    args = ["data", "import-hf", str(tmp_path / "one"), "--split", "real"]
    assert main([*args, "--output", str(tmp_path / "o")]) == 0
    assert {s.split for s in _imported(tmp_path / "o").values()} == {"real"}


def test_import_hf_picks_the_revision_of_a_hub_cache(tmp_path, capsys):
    repo = tmp_path / "hub" / "datasets--Aleksandar--PartEdit-Bench"
    old = [{k: v for k, v in row.items() if k != "token_cls"} for row in hf_rows("synth", 2)]
    _parquet(old, repo / "snapshots" / "aaaa1111" / "data" / "synth-00000-of-00001.parquet")
    _parquet(hf_rows("synth", 2), repo / "snapshots" / "bbbb2222" / "data" / "synth-0.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaaa1111")
    (repo / "refs" / "v1.1").write_text("bbbb2222")
    root = str(tmp_path / "hub")  # the cache root, holding both revisions
    assert main(["data", "import-hf", root, "--output", str(tmp_path / "main")]) == 0
    assert "token_cls" not in _imported(tmp_path / "main")["synth-1"].extra
    args = ["data", "import-hf", root, "--revision", "v1.1", "--output", str(tmp_path / "v11")]
    assert main(args) == 0
    assert _imported(tmp_path / "v11")["synth-1"].extra["token_cls"] == "quadruped_head"
    capsys.readouterr()
    args = ["data", "import-hf", str(repo), "--revision", "v9", "--output", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no snapshot for revision 'v9'" in err and "main, v1.1" in err


@pytest.mark.parametrize(
    "body",
    [
        '{"shapes": [{"label": "head", "points": "bad"}], "imageWidth": 40, "imageHeight": 30}',
        '{"shapes": [{"label": "head", "points": [[1, 2], [3]]}], "imageWidth": 40, '
        '"imageHeight": 30}',
        '{"shapes": 5}',
        "not json",
    ],
)
def test_a_malformed_labelme_file_is_one_line_and_changes_nothing(tmp_path, capsys, body):
    suite = files_suite(tmp_path / "suite")
    before = {p: p.read_bytes() for p in (tmp_path / "suite").rglob("*") if p.is_file()}
    labelme = tmp_path / "labelme"
    labelme.mkdir()
    (labelme / "c.json").write_text(body)
    capsys.readouterr()
    assert main(["data", "import-masks", str(suite), str(labelme), "--format", "labelme"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "malformed LabelMe file" in err, err
    after = {p: p.read_bytes() for p in (tmp_path / "suite").rglob("*") if p.is_file()}
    assert after == before


def test_a_soft_mask_is_shown_by_its_own_range_with_an_outline():
    """`mask_view` (the edit command's overlay, the gallery, the demo): a faint mask (max 0.06)
    is as visible as a strong one of the same shape; a low-contrast mask of mean ~0.5 tints only
    where it is high; the outline is drawn where the mask crosses half its range; a constant
    mask leaves the image as it is."""
    from PIL import Image

    from partedit_bench.data.masks import mask_view, outline

    image = Image.fromarray(np.full((32, 32, 3), 100, np.uint8))
    shape = np.zeros((32, 32))
    shape[8:24, 8:24] = 1.0
    faint, strong = mask_view(image, 0.06 * shape), mask_view(image, shape)
    assert np.array_equal(np.asarray(faint), np.asarray(strong))
    inside, outside = np.asarray(strong)[16, 16], np.asarray(strong)[2, 2]
    assert (
        inside.tolist() == [round(100 * 0.4 + 255 * 0.6), 40, 40] and outside.tolist() == [100] * 3
    )
    red = np.all(np.asarray(strong) == (255, 0, 0), axis=-1)
    assert np.array_equal(red, outline(shape >= 0.5))  # the outline, at full strength
    low_contrast = 0.45 + 0.1 * shape  # mean about 0.49
    tinted = np.any(np.asarray(mask_view(image, low_contrast)) != 100, axis=-1)
    assert tinted[16, 16] and not tinted[2, 2]
    assert np.array_equal(np.asarray(mask_view(image, np.full((32, 32), 0.49))), np.asarray(image))
    with_gt = np.asarray(mask_view(image, shape, gt=shape.astype(bool)))
    assert (with_gt[outline(shape.astype(bool))] == (0, 255, 0)).all()
