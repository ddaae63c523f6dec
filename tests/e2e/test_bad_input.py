"""Each bad input gets one clear error line, exit code 2, and no partial output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.data.suites import load_suite
from tests.helpers import IDENTITY_RUN


def write_suite(
    folder: Path, image: Image.Image, mask: Image.Image | None = None, extra: str = ""
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / "img.png")
    (mask or Image.new("L", image.size, 0)).save(folder / "mask.png")
    (folder / "suite.yaml").write_text(
        "name: broken\nversion: 1\nsamples:\n"
        "  - {id: a, split: real, class_name: humanoid, part: head, part_token: humanoid-head,\n"
        "     original_image: img.png, gt_mask: mask.png" + extra + "}\n"
    )
    return folder / "suite.yaml"


def rgb(size=(32, 32)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), np.uint8))


def fail(capsys, args: list[str], expected: str, out: Path) -> str:
    defaults = [] if "--methods" in args else ["--methods", "identity"]
    defaults += [] if "--backbone" in args else ["--backbone", "tiny-sd"]
    code = main(["run", *defaults, *args, "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("partedit-bench: error:") and expected in err, err
    assert "Traceback" not in err
    return err


def mask_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    square = Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 12))
    gray = square.copy()
    gray.putpixel((0, 0), 128)
    return {
        "wrong size": (
            write_suite(tmp / "size", rgb(), square.resize((16, 16))),
            "is 16x16 but its image is 32x32",
        ),
        "several channels": (
            write_suite(tmp / "channels", rgb(), square.convert("RGB")),
            "must be single-channel",
        ),
        "not binary": (write_suite(tmp / "binary", rgb(), gray), "is not binary"),
    }


def test_unknown_names_suggest(tmp_path, capsys):
    out = tmp_path / "o"
    fail(
        capsys, ["--methods", "identiy"], "unknown method 'identiy' (did you mean: identity?)", out
    )
    fail(capsys, ["--suite", "partwrld"], "unknown suite 'partwrld' (did you mean: partworld,", out)
    fail(capsys, ["--backbone", "tiny-sdx"], "unknown backbone 'tiny-sdx' (did you mean:", out)
    fail(
        capsys,
        [
            "--methods",
            "tests.helpers:SlowIdentity",
            "--set",
            "tests.helpers:SlowIdentity.dealy_s=1",
        ],
        "has no option 'dealy_s' (did you mean: delay_s?)",
        out,
    )
    fail(capsys, ["--methods", "tests.helpers:SlowIdentity[delay_s=fast]"], "must be float", out)
    fail(capsys, ["--set", "identity.x=1"], "has no option 'x'", out)
    fail(capsys, ["--shard", "3/2"], "shard", out)
    fail(capsys, ["--seeds", "a"], "--seeds", out)
    assert not out.exists()


def test_malformed_suite_files(tmp_path, capsys):
    out = tmp_path / "o"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\nversion: 1\nsamples: [\n  {id: a\n")
    fail(capsys, ["--suite", str(bad_yaml)], "malformed suite file", out)
    no_samples = tmp_path / "empty.yaml"
    no_samples.write_text("name: x\nversion: 1\n")
    fail(capsys, ["--suite", str(no_samples)], "needs 'samples'", out)
    unknown_part = write_suite(tmp_path / "part", rgb())
    unknown_part.write_text(unknown_part.read_text().replace("humanoid-head", "humanoid-hed"))
    fail(capsys, ["--suite", str(unknown_part)], "unknown part token 'humanoid-hed'", out)
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("include: cycle.yaml\nname: c\nversion: 1\n")
    fail(capsys, ["--suite", str(cycle)], "include cycle", out)
    assert not out.exists()


def test_bad_masks(tmp_path, capsys):
    for name, (suite, expected) in mask_cases(tmp_path).items():
        out = tmp_path / f"o-{name}"
        fail(capsys, ["--suite", str(suite)], expected, out)
        assert not out.exists(), name


def test_bad_images(tmp_path, capsys):
    missing = write_suite(tmp_path / "missing", rgb())
    (tmp_path / "missing" / "img.png").unlink()
    fail(capsys, ["--suite", str(missing)], "image not found", tmp_path / "o1")
    garbage = write_suite(tmp_path / "garbage", rgb())
    (tmp_path / "garbage" / "img.png").write_bytes(b"not a png")
    fail(capsys, ["--suite", str(garbage)], "cannot read image", tmp_path / "o2")
    rgba = np.dstack([np.asarray(rgb()), np.full((32, 32), 128, np.uint8)])
    transparent = write_suite(tmp_path / "rgba", Image.fromarray(rgba, "RGBA"))
    fail(capsys, ["--suite", str(transparent)], "has transparent pixels", tmp_path / "o3")
    sixteen = write_suite(tmp_path / "16bit", Image.fromarray(np.full((32, 32), 40000, np.uint16)))
    fail(capsys, ["--suite", str(sixteen)], "is 16-bit", tmp_path / "o4")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_opaque_rgba_and_grayscale_are_converted(tmp_path):
    opaque = np.dstack([np.asarray(rgb()), np.full((32, 32), 255, np.uint8)])
    suite = write_suite(tmp_path / "ok", Image.fromarray(opaque, "RGBA"))
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--suite",
                str(suite),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    edited = np.asarray(Image.open(tmp_path / "o" / "identity" / "real" / "a__s0.png"))
    np.testing.assert_array_equal(edited, opaque[..., :3])


def test_changed_configuration_is_refused_and_nothing_is_lost(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--limit",
                "2",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fail(capsys, ["--limit", "2", "--seeds", "1"], "holds a different configuration", out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--limit",
                "2",
                "--seeds",
                "1",
                "--overwrite",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "run.json").read_text())["identity"]["seeds"] == [1]


def test_partworld_suite_copy_still_loads(tmp_path):
    # The shipped suite file is valid on its own, and a copy elsewhere behaves the same.
    src = Path(load_suite("partworld").path)
    copy = tmp_path / "pw" / "suite.yaml"
    copy.parent.mkdir()
    shutil.copy(src, copy)
    assert [s.id for s in load_suite(str(copy)).samples] == [
        s.id for s in load_suite("partworld").samples
    ]


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["lst", "methods"]])
def test_bad_arguments_are_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_names_that_become_paths_cannot_leave_their_folder(tmp_path, capsys):
    # a sample id
    suite = tmp_path / "ids" / "suite.yaml"
    write_suite(suite.parent, rgb())
    suite.write_text(suite.read_text().replace("{id: a,", "{id: ../../escaped,"))
    out = tmp_path / "out"
    fail(capsys, ["--suite", str(suite)], "sample id '../../escaped' cannot be a file name", out)
    assert not out.exists() and not (tmp_path / "escaped__s0.png").exists()
    # a variant label of a method config
    config = tmp_path / "methods.yaml"
    config.write_text("variants:\n  - {method: identity, label: ..}\n")
    fail(capsys, ["--method-config", str(config), "--limit", "1"], "variant label '..'", out)
    assert not out.exists()
    # options for a method that does not exist are an error, not ignored
    config.write_text("options:\n  partedt: {omega: 1.0}\n")
    err = fail(capsys, ["--method-config", str(config), "--limit", "1"], "unknown method", out)
    assert "partedit" in err  # suggested
    # the name of imported edits
    edits = tmp_path / "edits"
    edits.mkdir()
    rgb((64, 64)).save(edits / f"{load_suite('partworld').samples[0].id}.png")
    code = main(
        [
            "import-edits", str(edits), "--suite", "partworld", "--name", "../../X",
            "--output", str(out),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot be a file name" in err, err
    assert not out.exists() and not (tmp_path / "X").exists()


def test_a_run_in_which_every_job_fails_reports_the_failures(tmp_path, capsys):
    first = load_suite("partworld").samples[0].id
    out = tmp_path / "out"
    code = main(
        [
            "run", "--methods", f"tests.helpers:SlowIdentity[fail_on={first}]", "--limit", "1",
            "--output", str(out),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    text = (captured.out + captured.err).replace("\n", " ")
    # (a stale diffusers log handler of an earlier test may print a logging traceback, with
    # its own ValueError, into this capture: only the report's own crash is looked for)
    assert code == 1
    assert "max() arg" not in text
    assert "deliberate failure" in text and "│ 0 │" in text.replace("  ", " ")
    assert main(["report", str(out)]) == 0  # the report of it too


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("ef_ddpm.steps=30", "option ef_ddpm.skip=36 must be in [0, 29]"),
        ("partedit.steps=0", "option partedit.steps=0 must be at least 1"),
        ("p2p.cross_replace=1.5", "option p2p.cross_replace=1.5 must be in [0, 1]"),
        ("blended_latent.blend_start=1.0", "blend_start=1.0 must be in [0, 0.99]"),
    ],
)
def test_option_values_are_range_checked(tmp_path, capsys, setting, expected):
    method = setting.split(".")[0]
    fail(capsys, ["--methods", method, "--set", setting], expected, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--device", "bogus"], "--device 'bogus' is not a device"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--seeds", str(2**70)], "is outside 0 .. 2**63 - 1"),
    ],
)
def test_bad_devices_and_seeds_are_one_line(tmp_path, capsys, args, expected):
    import torch

    if "cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    fail(capsys, [*args, "--limit", "1"], expected, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    fail(capsys, ["--limit", "1"], "is a file, not a folder", target)
    assert target.read_text() == "keep me"


def test_a_shard_without_jobs_exits_zero(tmp_path, capsys):
    code = main([*IDENTITY_RUN, "--limit", "2", "--shard", "999/1000", "--output", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0 and "has no jobs" in (captured.out + captured.err).replace("\n", " ")


def test_markup_in_a_prompt_cannot_break_the_gallery(tmp_path):
    hostile = "a man <!--<script>alert(1)</script> with a <humanoid-head>"
    suite = write_suite(tmp_path / "s", rgb(), extra=f', prompt_changed: "{hostile}"')
    out = tmp_path / "out"
    assert main([*IDENTITY_RUN, "--suite", str(suite), "--output", str(out)]) == 0
    page = (out / "report" / "gallery.html").read_text()
    assert "<!--<script" not in page and "</script> with" not in page
    assert "\\u003c!--\\u003cscript>" in page  # the prompt is there, escaped


def test_import_edits_does_not_replace_a_methods_records(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "2", "--output", str(out)]) == 0
    before = {p: p.read_bytes() for p in (out / "identity").rglob("*") if p.is_file()}
    edits = tmp_path / "edits"
    edits.mkdir()
    rgb((64, 64)).save(edits / f"{load_suite('partworld').samples[0].id}.png")
    capsys.readouterr()
    code = main(
        ["import-edits", str(edits), "--suite", "partworld", "--name", "identity",
         "--output", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "holds the records of method" in err
    assert {p: p.read_bytes() for p in (out / "identity").rglob("*") if p.is_file()} == before


def test_overwrite_leaves_no_replaced_records_in_the_gallery_or_study(tmp_path):
    from partedit_bench.userstudy.export import export_study

    out = tmp_path / "run"
    slow = "tests.helpers:SlowIdentity"
    base = ["run", "--backbone", "tiny-sd", "--limit", "2", "--output", str(out)]
    assert main([*base, "--methods", f"identity,{slow}"]) == 0
    page = (out / "report" / "gallery.html").read_text()
    assert '"SlowIdentity"' in page  # the variant is named after the class
    assert main([*base, "--methods", "identity", "--dtype", "float64", "--overwrite"]) == 0
    page = (out / "report" / "gallery.html").read_text()
    assert '"SlowIdentity"' not in page and '"identity"' in page
    with pytest.raises(Exception, match="SlowIdentity"):  # no longer a variant of this run
        export_study(out, [("identity", "SlowIdentity")], tmp_path / "study")


def test_missing_checkpoint_files_are_named_before_anything_loads(tmp_path, capsys):
    import time

    start = time.perf_counter()
    code = main(["import-token", str(tmp_path / "nope.pt"), "--backbone", "sdxl", "--part",
                 "humanoid-head"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "token file not found" in err and len(err.splitlines()) == 1, err
    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(out)]) == 0
    capsys.readouterr()
    code = main(["evaluate", str(out), "--alpha-clip", str(tmp_path / "missing.pth")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--alpha-clip: checkpoint not found" in err, err
    assert time.perf_counter() - start < 60  # no hub retries


def test_score_refuses_inputs_of_another_size(tmp_path, capsys):
    for name, size in (("s.png", (32, 32)), ("small.png", (16, 16))):
        rgb(size).save(tmp_path / name)
    mask = Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 12))
    mask.save(tmp_path / "m.png")
    mask.resize((16, 16)).save(tmp_path / "m16.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    base = ["score", str(tmp_path / "s.png")]
    same = [str(tmp_path / "s.png"), str(tmp_path / "m.png")]
    cases = [
        ([str(tmp_path / "small.png"), str(tmp_path / "m.png")], "is 16x16 but"),
        ([*same, "--target", str(tmp_path / "small.png")], "--target"),
        ([*same, "--predicted-mask", str(tmp_path / "m16.png")], "--predicted-mask"),
        ([*same, "--predicted-mask", str(tmp_path / "junk.png")], "unreadable"),
    ]
    for args, expected in cases:
        capsys.readouterr()
        code = main([*base, *args, "--json"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (args, err)


def test_atomic_writes_honour_the_umask(tmp_path):
    import os

    from partedit_bench.io import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644


def test_sigterm_ends_a_run_with_the_resume_hint(tmp_path):
    import signal
    import subprocess
    import time

    from tests.conftest import cli_command, cli_env

    out = tmp_path / "run"
    proc = subprocess.Popen(
        cli_command("run", "--methods", "tests.helpers:SlowIdentity[delay_s=0.5]", "--limit",
                    "20", "--output", str(out)),
        cwd=Path(__file__).resolve().parents[2], env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not list(out.rglob("*.json"))[1:] and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err, err


def test_tables_are_not_cut_to_80_columns_in_a_pipe():
    import subprocess

    from tests.conftest import REPO, cli_command, cli_env

    env = cli_env()
    env.pop("COLUMNS", None)
    done = subprocess.run(
        cli_command("list", "methods"), cwd=REPO, env=env, capture_output=True, text=True
    )  # stdout is a pipe
    widest = max(len(line) for line in done.stdout.splitlines())
    assert done.returncode == 0 and widest > 80, widest


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Files for the table of bad inputs: a finished run, broken CSVs, JSON, tokens, images."""
    t = tmp_path_factory.mktemp("bad")
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(t / "run")]) == 0
    (t / "empty.csv").write_text("")
    (t / "header.csv").write_text("a,b\n")
    (t / "bad.json").write_text("{not json")
    (t / "dir").mkdir()
    (t / "tok.safetensors").write_bytes(b"\x00\x01garbage")
    (t / "notimg.png").write_bytes(b"junk")
    rgb((8, 8)).save(t / "small.png")
    Image.new("L", (8, 8)).save(t / "m8.png")
    pickled = t / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    return t


RUN = ["run", "--backbone", "tiny-sd", "--limit", "1", "--output", "{t}/new"]
BAD_INPUTS = [
    # run
    ([*RUN, "--methods", "identity", "--limit", "0"], "--limit must be at least 1"),
    ([*RUN, "--methods", "identity", "--dtype", "float8"], "unknown dtype 'float8'"),
    ([*RUN, "--methods", "identity", "--method-config", "{t}/nope.yaml"], "not found"),
    ([*RUN, "--methods", "identity", "--method-config", "{t}/bad.json"], "malformed method"),
    ([*RUN, "--methods", ""], "no methods given"),
    ([*RUN, "--methods", "identity["], "unbalanced brackets"),
    ([*RUN, "--methods", "identity", "--set", "noequals"], "--set expects method.key=value"),
    ([*RUN, "--methods", "identity", "--seeds", "1,1"], "--seeds lists 1 more than once"),
    ([*RUN, "--methods", "identity", "--shard", "a/b"], "--shard expects i/n"),
    ([*RUN, "--methods", "identity", "--suite", "{t}/dir"], "unknown suite"),
    ([*RUN, "--methods", "identity", "--backbone", "{t}/pickled"], "only pickle weights"),
    ([*RUN, "--methods", "ledits_pp", "--set", "ledits_pp.edit_threshold=2"], "in [0, 1]"),
    ([*RUN, "--methods", "ledits_pp", "--set", "ledits_pp.mask=bogus"], "must be one of"),
    ([*RUN, "--methods", "masactrl", "--set", "masactrl.start_step=-1"], "start_step=-1"),
    ([*RUN, "--methods", "ip2p", "--set", "ip2p.instruction=5"], "must be in [0, 2]"),
    ([*RUN, "--methods", "sdxl_inpaint", "--set", "sdxl_inpaint.strength=2"], "strength=2"),
    ([*RUN, "--methods", "partedit", "--set", "partedit.threshold=x"], "must be one of"),
    # report / evaluate / score / list
    (["report", "{t}/nope"], "is not a run folder"),
    (["report", "{t}/dir"], "is not a run folder"),
    (["report", "{t}/run", "{t}/nope"], "is not a run folder"),
    (["report", "{t}/run", "--metrics", "bogus"], "unknown metric 'bogus'"),
    (["report", "{t}/run", "--output", "{t}/small.png"], "is a file, not a folder"),
    (["evaluate", "{t}/nope"], "is not a run folder"),
    (["evaluate", "{t}/run", "--metrics", "psnr_bgg"], "did you mean: psnr_bg"),
    (["evaluate", "{t}/run", "--alpha-clip", "{t}/bad.json"], "weights-only state dict"),
    (["score", "{t}/nope.png", "{t}/small.png", "{t}/m8.png"], "image not found"),
    (["score", "{t}/notimg.png", "{t}/small.png", "{t}/m8.png"], "cannot read image"),
    (["score", "{t}/small.png", "{t}/small.png", "{t}/notimg.png"], "cannot read mask"),
    (["score", "{t}/small.png", "{t}/small.png", "{t}/small.png"], "single-channel"),
    (["list", "bogus"], "invalid choice: 'bogus'"),
    # import-edits
    (["import-edits", "{t}/nope", "--suite", "partworld", "--name", "x", "--output", "{t}/ie"],
     "no edits for suite"),
    (["import-edits", "{t}/dir", "--suite", "partworld", "--name", "x", "--output", "{t}/ie"],
     "no edits for suite"),
    (["import-edits", "{t}/dir", "--suite", "nosuite", "--name", "x", "--output", "{t}/ie"],
     "unknown suite 'nosuite'"),
    (["import-edits", "--suite", "partworld", "--from-field", "nofield", "--name", "x",
      "--output", "{t}/ie"], "found in field 'nofield'"),
    # data
    (["data", "validate", "{t}/nope.yaml"], "unknown suite"),
    (["data", "import-masks", "partworld", "{t}/dir"], "is not a folder of samples"),
    (["data", "import-masks", "{t}/dir", "{t}/dir"], "unknown suite"),
    (["data", "import-hf", "{t}/nope"], "cannot load dataset"),
    (["data", "import-hf", "{t}/bad.json"], "expected a save_to_disk folder or parquet"),
    (["data", "import-parts", "{t}/nope.json", "--images", "{t}/dir", "--output", "{t}/ip"],
     "malformed PartImageNet annotation file"),
    (["data", "import-parts", "{t}/bad.json", "--images", "{t}/dir", "--output", "{t}/ip"],
     "malformed PartImageNet annotation file"),
    # train-token / import-token
    (["train-token", "--backbone", "tiny-sd", "--part", "bogus-part", "--output", "{t}/tt"],
     "unknown part token 'bogus-part'"),
    (["train-token", "--backbone", "bogus", "--part", "humanoid-head", "--output", "{t}/tt"],
     "unknown backbone 'bogus'"),
    (["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head", "--layers", "0",
      "--output", "{t}/tt"], "--layers must be at least 1"),
    (["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head", "--images", "0",
      "--output", "{t}/tt"], "--images must be at least 1"),
    (["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head", "--suite",
      "{t}/nope.yaml", "--output", "{t}/tt"], "unknown suite"),
    (["import-token", "{t}/tok.safetensors", "--backbone", "tiny-sd", "--part", "humanoid-head"],
     "cannot read {t}/tok.safetensors as safetensors"),
    (["import-token", "{t}/bad.json", "--backbone", "tiny-sd", "--part", "humanoid-head"],
     "refusing to execute code from a checkpoint"),
    (["import-token", "{t}/tok.safetensors", "--backbone", "tiny-sd", "--part", "bogus"],
     "unknown part token 'bogus'"),
    # userstudy / partworld
    (["userstudy", "export", "{t}/run", "--pairs", "identity", "--output", "{t}/us"],
     "--pairs expects a:b"),
    (["userstudy", "export", "{t}/nope", "--pairs", "identity:x", "--output", "{t}/us"],
     "is not a run folder"),
    (["userstudy", "export", "{t}/run", "--pairs", "identity:bogus", "--output", "{t}/us"],
     "no edits of 'bogus'"),
    (["userstudy", "export", "{t}/run", "--pairs", "identity:x", "--catches", "-1", "--output",
      "{t}/us"], "--catches must be at least 0, got -1"),
    (["userstudy", "export", "{t}/run", "--pairs", "identity:x", "--repeats", "-3", "--output",
      "{t}/us"], "--repeats must be at least 0, got -3"),
    (["userstudy", "analyze", "{t}/empty.csv", "--output", "{t}/ua"], "cannot read answers"),
    (["userstudy", "analyze", "{t}/header.csv", "--output", "{t}/ua"], "missing columns"),
    (["userstudy", "analyze", "{t}/nope.csv", "--output", "{t}/ua"], "answers file not found"),
    (["partworld", "evaluate", "--backbone", "bogus"], "unknown backbone 'bogus'"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUTS, ids=lambda v: " ".join(v)[:60])
def test_table_of_bad_inputs(bad_files, capsys, argv, expected):
    t = str(bad_files)
    argv = [a.replace("{t}", t) for a in argv]
    before = {p: p.read_bytes() for p in bad_files.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("partedit-bench: error:"), err
    assert expected.replace("{t}", t) in err, err
    after = {p: p.read_bytes() for p in bad_files.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing lost


def test_palette_and_16_bit_masks_are_read_by_what_they_show(tmp_path):
    from partedit_bench.data.schema import load_mask

    part = np.zeros((8, 8), np.uint8)
    part[2:5, 2:5] = 1
    palette = Image.fromarray(part, "P")  # index 1 shown white, index 0 black
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.save(tmp_path / "p.png")
    inverted = Image.fromarray(part, "P")  # the same indices, the colours swapped
    inverted.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    inverted.save(tmp_path / "q.png")
    Image.fromarray(part.astype(np.uint16) * 65535).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "p.png", (8, 8)), part.astype(bool))
    np.testing.assert_array_equal(load_mask(tmp_path / "q.png", (8, 8)), ~part.astype(bool))
    np.testing.assert_array_equal(load_mask(tmp_path / "m16.png", (8, 8)), part.astype(bool))


def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path, capsys, monkeypatch):
    import errno
    import os

    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    capsys.readouterr()
    code = main([*IDENTITY_RUN, "--limit", "3", "--output", str(out)])
    monkeypatch.setattr(os, "fsync", real_fsync)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "No space left on device" in errors[0], errors
    assert ".json" in errors[0] or ".png" in errors[0]  # the file it could not write
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main([*IDENTITY_RUN, "--limit", "3", "--output", str(out)]) == 0  # then it resumes


def test_a_decompression_bomb_is_refused_in_one_line(tmp_path, capsys):
    bomb = write_suite(tmp_path / "bomb", rgb())
    # a PNG whose header claims 2 * MAX_IMAGE_PIXELS + 1 pixels (Pillow refuses it unread)
    import struct
    import zlib

    width = height = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 2
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    (tmp_path / "bomb" / "img.png").write_bytes(png)
    fail(capsys, ["--suite", str(bomb)], "cannot read image", tmp_path / "o")
    assert not (tmp_path / "o").exists()
