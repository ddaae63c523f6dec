"""The output policy (issue #26's hostile-input round): nothing lost, nothing written outside
the chosen output, nothing stale scored. Each case gives exit 2 and one line, or succeeds
without touching anything outside its output; what existed before survives byte for byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.paths import REPO_ROOT
from tests.helpers import IDENTITY_RUN


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (symlinks not followed) with its bytes."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                out[str(path.relative_to(folder))] = path.read_bytes()
    return out


def one_line(capsys, argv: list[str], expected: str) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("partedit-bench: error:"), err
    assert "Traceback" not in err and expected in err, err
    return err


def hf_folder(tmp: Path, rows: list[dict], name: str = "hf") -> Path:
    import datasets

    datasets.DatasetDict({"synth": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp / name))
    return tmp / name


def hf_rows(count: int = 2, **changes) -> list[dict]:
    from tests.unit.test_data import hf_rows as rows

    out = rows("synth", count)
    for row in out:
        row.update(changes)
        row["id"] = str(row["id"])  # ids of one column: all text, as hostile ones are
    return out


# -- data destroyed or written outside the output ------------------------------------------------


def test_import_hf_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    source = hf_folder(tmp_path, hf_rows())
    precious = tmp_path / "precious"
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(precious)]) == 0
    before = snapshot(precious)
    args = ["data", "import-hf", str(source), "--name", "x", "--output", str(precious)]
    one_line(capsys, args, "pass --overwrite")
    one_line(capsys, [*args, "--overwrite"], "refusing to write there even with --overwrite")
    assert snapshot(precious) == before
    # an earlier import is replaced with --overwrite, and only then
    earlier = tmp_path / "earlier"
    assert main(["data", "import-hf", str(source), "--output", str(earlier)]) == 0
    one_line(capsys, ["data", "import-hf", str(source), "--output", str(earlier)], "--overwrite")
    assert main(["data", "import-hf", str(source), "--output", str(earlier), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "hf", "precious"]


@pytest.mark.parametrize("bad_id", ["../../escaped", "/tmp/abs-escaped", "a/../../b", "a\\\\b"])
def test_import_hf_checks_ids_before_writing(tmp_path, capsys, bad_id):
    rows = hf_rows(2)
    rows[1]["id"] = bad_id.replace("/tmp", str(tmp_path)) if bad_id.startswith("/") else bad_id
    source = hf_folder(tmp_path / "src", rows)
    out = tmp_path / "sandbox" / "deep" / "out"
    out.parent.mkdir(parents=True)
    before = snapshot(tmp_path)
    one_line(capsys, ["data", "import-hf", str(source), "--output", str(out)], "sample id")
    assert snapshot(tmp_path) == before  # nothing written anywhere, no staging left
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_import_hf_name_cannot_leave_the_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(tmp_path / "data" / "root"))
    source = hf_folder(tmp_path, hf_rows())
    for name in ("../../../outside/X", "../x", "a/b", "", "x" * 300):
        one_line(capsys, ["data", "import-hf", str(source), "--name", name], "--name")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "data").exists()


def make_photo(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(folder / "a.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    Image.fromarray(mask).save(folder / "a_mask.png")
    return folder / "a.png", folder / "a_mask.png"


def test_edit_never_writes_over_its_inputs_or_existing_files(tmp_path, capsys):
    photo, mask = make_photo(tmp_path / "IN")
    before = snapshot(tmp_path)
    edit = ["edit", str(photo), "--prompt", "a photo", "--edit", "a <humanoid-head>"]
    for extra in ([], ["--overwrite"]):  # --overwrite never allows an input
        one_line(capsys, [*edit, "--out", str(photo), *extra], "is an input of this command")
        one_line(
            capsys,
            [*edit, "--mask", str(mask), "--out", str(tmp_path / "IN" / "a.png"), *extra],
            "is an input",
        )
    # OUT_mask.png of --out IN/a.png would be the user's mask
    one_line(capsys, [*edit, "--mask", str(mask), "--out", str(photo)], "is an input")
    (tmp_path / "IN" / "b_mask.png").write_bytes(b"the user's")
    before = snapshot(tmp_path)
    one_line(capsys, [*edit, "--out", str(tmp_path / "IN" / "b.png")], "pass --overwrite")
    one_line(capsys, [*edit, "--seed", "-1"], "--seed must be at least 0")
    one_line(capsys, [*edit, "--out", str(photo / "x.png")], "is a file, not a folder")
    assert snapshot(tmp_path) == before


def released_token(path: Path, tensor: torch.Tensor) -> Path:
    torch.save(tensor, path)
    return path


def test_import_token_never_replaces_a_shipped_token_and_checks_values(tmp_path, capsys):
    shipped = REPO_ROOT / "benchmark_data" / "tokens" / "tiny-sd" / "humanoid-head.safetensors"
    assert shipped.is_file()
    before = shipped.read_bytes()
    good = released_token(tmp_path / "good.pt", torch.randn(2, 32))
    args = ["import-token", str(good), "--backbone", "tiny-sd", "--part", "humanoid-head"]
    one_line(capsys, args, "(a file shipped with partedit-bench); pass --overwrite")
    assert shipped.read_bytes() == before
    (tmp_path / "folder").mkdir()
    one_line(capsys, [*args, "--output", str(tmp_path / "folder")], "is a folder, not a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "good.pt"]
    for name, tensor, expected in (
        ("nan", torch.full((2, 32), float("nan")), "NaN or Inf"),
        ("inf", torch.full((2, 32), float("inf")), "NaN or Inf"),
        ("int", torch.ones(2, 32, dtype=torch.int64), "not floating point"),
        ("shape", torch.ones(3, 32), "a part token is (2, d)"),
    ):
        bad = released_token(tmp_path / f"{name}.pt", tensor)
        out = tmp_path / f"{name}.safetensors"
        one_line(capsys, [*args[:1], str(bad), *args[2:], "--output", str(out)], expected)
        assert not out.exists()


def files_suite(tmp_path: Path) -> tuple[Path, Path]:
    """A one-sample files suite without masks (tmp_path/suite) and a mask for it."""
    from partedit_bench.data.files_suite import write_files_suite
    from partedit_bench.data.schema import Sample

    photo, mask = make_photo(tmp_path / "IN")
    sample = Sample(
        id="a", split="real", class_name="humanoid", part="head", part_token="humanoid-head",
        original_image=str(photo), prompt_original="a photo",
    )  # fmt: skip
    write_files_suite(tmp_path / "suite", {"name": "s", "version": 1}, [sample])
    return tmp_path / "suite", mask


def test_import_masks_never_follows_a_symlink_out_of_the_suite(tmp_path, capsys):
    suite, _ = files_suite(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (suite / "masks").symlink_to(outside, target_is_directory=True)
    masks = tmp_path / "masks"
    masks.mkdir()
    (tmp_path / "IN" / "a_mask.png").rename(masks / "a.png")
    before = snapshot(tmp_path)
    one_line(capsys, ["data", "import-masks", str(suite), str(masks)], "outside")
    assert snapshot(tmp_path) == before and not any(outside.iterdir())


def test_import_masks_replaces_a_different_mask_only_with_overwrite(tmp_path, capsys):
    suite, mask = files_suite(tmp_path)
    first, second = tmp_path / "m1", tmp_path / "m2"
    first.mkdir(), second.mkdir()
    Image.open(mask).save(first / "a.png")
    Image.fromarray(255 - np.asarray(Image.open(mask))).save(second / "a.png")
    assert main(["data", "import-masks", str(suite), str(first)]) == 0
    assert main(["data", "import-masks", str(suite), str(first)]) == 0  # the same: no change
    kept = (suite / "masks" / "a.png").read_bytes()
    one_line(capsys, ["data", "import-masks", str(suite), str(second)], "pass --overwrite")
    assert (suite / "masks" / "a.png").read_bytes() == kept
    assert main(["data", "import-masks", str(suite), str(second), "--overwrite"]) == 0
    assert (suite / "masks" / "a.png").read_bytes() != kept


# -- stale or tampered results -------------------------------------------------------------------


@pytest.fixture
def two_methods(tmp_path):
    """A run with `identity` and an imported `noisy` edit of one sample."""
    run = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "2", "--output", str(run)]) == 0
    from partedit_bench.data.suites import load_suite

    edits = tmp_path / "edits"
    edits.mkdir()
    for sample in load_suite("partworld").samples[:2]:
        pixels = np.asarray(Image.open(sample.original_image).convert("RGB"))
        Image.fromarray(255 - pixels).save(edits / f"{sample.id}.png")
    args = ["import-edits", str(edits), "--suite", "partworld", "--name", "noisy"]
    assert main([*args, "--output", str(run)]) == 0
    assert main(["evaluate", str(run)]) == 0
    return run


@pytest.mark.parametrize("tamper", ["swapped", "truncated", "outside", "predicted-outside"])
def test_evaluate_and_report_refuse_changed_outputs(two_methods, capsys, tamper):
    run = two_methods
    assert main(["report", str(run)]) == 0
    noisy = sorted((run / "noisy").glob("*/*__s0.png"))[0]
    identity = run / "identity" / noisy.parent.name / noisy.name
    record_path = noisy.with_suffix(".json")
    if tamper == "swapped":  # the no-edit image put in place of the edit
        noisy.write_bytes(identity.read_bytes())
    elif tamper == "truncated":
        noisy.write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 2])
    else:
        record = json.loads(record_path.read_text())
        key = "image" if tamper == "outside" else "predicted_mask"
        record[key] = str(identity.resolve())  # an absolute path outside the record's folder
        if tamper == "outside":
            record["files"] = {record[key]: record["files"][noisy.name]}
        record_path.write_text(json.dumps(record))
    job = "/".join(noisy.with_suffix("").parts[-3:])
    one_line(capsys, ["evaluate", str(run)], f"job {job}: its files do not match its record")
    one_line(capsys, ["report", str(run)], f"job {job}")
    one_line(capsys, ["userstudy", "export", str(run), "--pairs", "identity:noisy", "--output",
                      str(run.parent / "study")], f"job {job}")  # fmt: skip


def test_metric_rows_are_keyed_on_the_image_too(two_methods):
    """A metric row written for other image bytes is recomputed, never reused."""
    run = two_methods
    noisy = sorted((run / "noisy").glob("*/*__s0.png"))[0]
    record_path = noisy.with_suffix(".json")
    rows = sorted(noisy.parent.glob(f"{noisy.stem}.pixel-*.metrics.json"))
    assert len(rows) == 1
    row = json.loads(rows[0].read_text())
    honest = row["values"]["psnr_bg"]
    # forge: the record and PNG become identity's bytes with a matching digest, the job hash kept
    from partedit_bench.store import bytes_digest

    identity = run / "identity" / noisy.parent.name / noisy.name
    noisy.write_bytes(identity.read_bytes())
    record = json.loads(record_path.read_text())
    record["files"][noisy.name] = bytes_digest(noisy.read_bytes())
    record_path.write_text(json.dumps(record))
    assert main(["evaluate", str(run)]) == 0
    fresh = json.loads(rows[0].read_text())["values"]["psnr_bg"]
    assert fresh == 100.0 and honest < 100  # recomputed from the bytes now there


# -- the importer ---------------------------------------------------------------------------------


def test_importer_rows_corrupt_missing_transparent_or_maskless(tmp_path, capsys):
    import datasets

    out = tmp_path / "out"
    # corrupt image bytes: one line naming the source and the row
    rows = hf_rows(2)
    features = datasets.Dataset.from_list(rows).features
    rows[1]["original_image"] = {"bytes": b"not an image", "path": None}
    data = datasets.Dataset.from_list(rows, features=features)
    datasets.DatasetDict({"synth": data}).save_to_disk(str(tmp_path / "corrupt"))
    one_line(
        capsys,
        ["data", "import-hf", str(tmp_path / "corrupt"), "--output", str(out)],
        "synth row 1 original_image: unreadable image",
    )
    # no original_image column
    rows = [{k: v for k, v in r.items() if k != "original_image"} for r in hf_rows(2)]
    source = hf_folder(tmp_path, rows, "nocol")
    one_line(capsys, ["data", "import-hf", str(source), "--output", str(out)], "no original_image")
    # a transparent image is refused, as everywhere else
    rows = hf_rows(2)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rows[0]["original_image"] = Image.fromarray(rgba, "RGBA")
    source = hf_folder(tmp_path, rows, "rgba")
    one_line(capsys, ["data", "import-hf", str(source), "--output", str(out)], "transparent")
    # NUL bytes and 5000-character ids
    for bad in ("a\x00b", "x" * 5000):
        rows = hf_rows(2)
        rows[0]["id"] = bad
        source = hf_folder(tmp_path, rows, "badid")
        one_line(capsys, ["data", "import-hf", str(source), "--output", str(out)], "sample id")
    assert not out.exists()
    # empty and full masks: left out and named, never scored
    rows = hf_rows(4)
    rows[1]["gt_mask"] = Image.new("L", (32, 32), 0)
    rows[2]["gt_mask"] = Image.new("L", (32, 32), 255)
    source = hf_folder(tmp_path, rows, "masks")
    capsys.readouterr()
    assert main(["data", "import-hf", str(source), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    printed = (captured.out + captured.err).replace("\n", " ")
    assert "left out 2 row(s)" in printed and "synth-1 (empty mask)" in printed, printed
    from partedit_bench.data.suites import load_suite

    suite = load_suite(str(out / "suite.yaml"))
    assert [s.id for s in suite.samples] == ["synth-0", "synth-3"]
    assert "synth-2 (mask covers the whole image)" in (out / "README.md").read_text()


def test_a_hub_id_imports_offline_from_a_filled_cache_and_records_its_revision(
    tmp_path, monkeypatch
):
    from tests.unit.test_data import _parquet

    cache = tmp_path / "hf-home" / "hub"
    repo = cache / "datasets--Aleksandar--PartEdit-Bench"
    commit = "0123456789abcdef0123456789abcdef01234567"
    _parquet(hf_rows(2), repo / "snapshots" / commit / "data" / "synth-00000-of-00001.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "out"
    assert main(["data", "import-hf", "Aleksandar/PartEdit-Bench", "--output", str(out)]) == 0
    import yaml

    definition = yaml.safe_load((out / "suite.yaml").read_text())
    assert definition["sources"] == [{"source": "Aleksandar/PartEdit-Bench", "revision": commit}]
    assert commit in (out / "README.md").read_text()


# -- accepted where it should refuse, and the tracebacks ------------------------------------------


def validate_lists(capsys, suite: Path, expected: str) -> None:
    """`data validate` lists a suite's problems, one line each, and exits 1."""
    capsys.readouterr()
    assert main(["data", "validate", str(suite)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and expected in captured.out + captured.err


def test_suite_seed_must_be_an_integer(tmp_path, capsys):
    photo, mask = make_photo(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nversion: 1\nsamples:\n  - {id: a, split: real, class_name: humanoid, part: "
        f"head, part_token: humanoid-head, original_image: {photo}, gt_mask: {mask}, seed: zero}}\n"
    )
    validate_lists(capsys, suite, "seed must be a non-negative integer, got 'zero'")
    out = tmp_path / "run"
    one_line(capsys, [*IDENTITY_RUN, "--suite", str(suite), "--output", str(out)], "seed")
    assert not out.exists()


def test_a_symlink_loop_image_is_one_line(tmp_path, capsys):
    photo, mask = make_photo(tmp_path)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nversion: 1\nsamples:\n  - {id: a, split: real, class_name: humanoid, part: "
        f"head, part_token: humanoid-head, original_image: {loop}, gt_mask: {mask}}}\n"
    )
    validate_lists(capsys, suite, "loop.png")
    one_line(
        capsys, [*IDENTITY_RUN, "--suite", str(suite), "--output", str(tmp_path / "o")], "loop"
    )


def test_outputs_below_files_or_into_unwritable_places_are_one_line(tmp_path, capsys):
    photo, _ = make_photo(tmp_path / "IN")
    answers = tmp_path / "answers.csv"
    answers.write_text("rater_id,question_id,pair,left,right,chosen,check\nr,q,a:b,a,b,a,\n")
    file = tmp_path / "file.txt"
    file.write_text("keep")
    cases = [
        ([*IDENTITY_RUN, "--limit", "1", "--output", str(file / "run")], "is a file"),
        (["userstudy", "analyze", str(answers), "--output", str(file)], "is a file, not a folder"),
        (
            ["userstudy", "export", str(tmp_path), "--pairs", "a:b", "--output", str(file)],
            "is a file, not a folder",
        ),
        (["partworld", "train", "--stages", "export"], "holds the shipped model"),
        (["partworld", "evaluate"], "(a file shipped with partedit-bench); pass --overwrite"),
        (["train-token", "--backbone", ",", "--part", "humanoid-head"], "names no backbone"),
        (
            ["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head", "--table",
             str(tmp_path)],
            "is a folder, not a file",
        ),
        (
            ["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head", "--output-root",
             str(file)],
            "is a file, not a folder",
        ),
        (
            ["edit", str(photo), "--prompt", "p", "--edit", "a <humanoid-head>", "--method",
             "identity", "--backbone", "tiny-sd", "--out", "/proc/partedit-bench/e.png"],
            "/proc/partedit-bench",
        ),
    ]  # fmt: skip
    before = snapshot(tmp_path)
    for argv, expected in cases:
        one_line(capsys, argv, expected)
    assert snapshot(tmp_path) == before


def test_train_token_refuses_more_layers_than_the_backbone_has(tmp_path, capsys):
    args = ["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head", "--layers", "99"]
    one_line(capsys, [*args, "--output-root", str(tmp_path / "t")], "decoder cross-attention")
    assert not (tmp_path / "t").exists()


def test_an_os_error_anywhere_is_one_line(monkeypatch, capsys):
    """The CLI's last line of defence: any OSError -> its path and reason, exit 2."""
    from partedit_bench.cli import run as run_module

    def broken(args, console):
        raise IsADirectoryError(21, "Is a directory", "/some/where")

    monkeypatch.setitem(run_module.COMMANDS, "list", broken)
    one_line(capsys, ["list", "methods"], "/some/where: Is a directory")
