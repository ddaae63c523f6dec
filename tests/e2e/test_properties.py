"""Property-based bad input (Hypothesis, fixed seed, bounded examples): for names taken from data
(sample ids, suite and method names) and for every path a command takes, whatever the string,
the command either succeeds with everything it wrote inside its output, or exits 2 with one
line, never a traceback, and nothing outside changes. A new command that takes a name or a
path joins `PATH_COMMANDS` and is covered by the same property."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.errors import UserError
from tests.e2e.test_output_policy import hf_folder, hf_rows, snapshot
from tests.helpers import IDENTITY_RUN


def bounded(examples: int) -> settings:
    """`examples` per property in `make test`; PARTEDIT_BENCH_PROPERTY_SCALE=N runs N times as
    many (a longer hunt, still derandomized)."""
    scale = int(os.environ.get("PARTEDIT_BENCH_PROPERTY_SCALE", "1"))
    return settings(
        max_examples=examples * scale,
        derandomize=True,  # a fixed seed: the same strings on every machine
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


#: Hostile names: anything, and the shapes that escape folders or break file systems.
NAMES = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "..",
            ".",
            "",
            " ",
            "../x",
            "../../../outside/X",
            "/abs",
            "a/b",
            "a\\b",
            "a\x00b",
            "x" * 300,
            "~",
            "$HOME",
            "*",
            ".hidden",
            "con",
            "a\nb",
            "\u202eevil",
        ]
    ),  # fmt: skip
    st.lists(st.sampled_from(["..", ".", "a", "", "b"]), min_size=1, max_size=4).map("/".join),
)

#: Hostile relative paths, at most two levels up (the commands run two levels below a sandbox,
#: so a path the user may legitimately point anywhere still lands inside it).
SEGMENT = st.one_of(
    st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(
        ["..", ".", "", "x" * 300, "a\x00b", "file.txt", "img.png", "run", "new", "out.png"]
    ),
)
PATHS = (
    st.lists(SEGMENT, min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda p: p.split("/").count("..") <= 2)
)


def outcome(capsys, argv: list[str]) -> int:
    """Runs the CLI; asserts the contract every command keeps: exit 0, 1 (validate's problems)
    or 2 with exactly one error line, and no traceback."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # --help and the like
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("partedit-bench: error:")]
        assert len(lines) == 1, err
    return code


def test_child_paths_stay_inside_their_root(tmp_path):
    from partedit_bench.outputs import child, is_inside

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)

    @bounded(300)
    @given(st.lists(NAMES, min_size=1, max_size=3))
    def check(names):
        for base in (root, root / "sub"):
            try:
                path = child(base, *names, field="name")
            except UserError as exc:
                assert "\n" not in str(exc).replace(repr("\n")[1:-1], "")
                continue
            assert is_inside(path, root) and not is_inside(path, tmp_path / "outside")
        with pytest.raises(UserError):
            child(root, "link", *names, field="name")  # through a symlink out: refused

    check()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A run with two methods, an image, a mask, answers and a token, two levels below `root`."""
    root = tmp_path_factory.mktemp("properties")
    cwd = root / "a" / "b"
    cwd.mkdir(parents=True)
    run = cwd / "run"
    assert main([*IDENTITY_RUN, "--limit", "2", "--output", str(run)]) == 0
    edits = cwd / "edits"
    edits.mkdir()
    from partedit_bench.data.suites import load_suite

    for sample in load_suite("partworld").samples[:2]:
        Image.open(sample.original_image).convert("RGB").rotate(90).save(edits / f"{sample.id}.png")
    args = ["import-edits", str(edits), "--suite", "partworld", "--name", "noisy"]
    assert main([*args, "--output", str(run)]) == 0
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(cwd / "img.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    Image.fromarray(mask).save(cwd / "mask.png")
    (cwd / "answers.csv").write_text(
        "rater_id,question_id,pair,left,right,chosen,check\nr,q,a:b,a,b,a,\n"
    )
    (cwd / "file.txt").write_text("keep")
    import torch

    torch.save(torch.randn(2, 32), cwd / "token.pt")
    hf_folder(cwd, hf_rows(2), "hf")
    return root, cwd


#: Every command that takes a path, with the path as `{p}` (relative to the sandbox's cwd).
PATH_COMMANDS = {
    "run --output": [*IDENTITY_RUN, "--limit", "1", "--output", "{p}"],
    "run --suite": [*IDENTITY_RUN, "--limit", "1", "--suite", "{p}", "--output", "o-run"],
    "run --method-config": [*IDENTITY_RUN, "--limit", "1", "--method-config", "{p}"],
    "evaluate": ["evaluate", "{p}"],
    "report --output": ["report", "run", "--output", "{p}"],
    "report run": ["report", "{p}"],
    "score": ["score", "{p}", "img.png", "mask.png"],
    "import-edits folder": ["import-edits", "{p}", "--suite", "partworld", "--name", "x",
                            "--output", "o-ie"],
    "import-edits --output": ["import-edits", "edits", "--suite", "partworld", "--name", "x",
                              "--output", "{p}"],
    "edit image": ["edit", "{p}", "--prompt", "p", "--edit", "a <humanoid-head>", "--method",
                   "identity", "--backbone", "tiny-sd", "--out", "o-edit.png"],
    "edit --out": ["edit", "img.png", "--prompt", "p", "--edit", "a <humanoid-head>",
                   "--method", "identity", "--backbone", "tiny-sd", "--out", "{p}"],
    "edit --mask": ["edit", "img.png", "--prompt", "p", "--edit", "a <humanoid-head>",
                    "--method", "identity", "--backbone", "tiny-sd", "--mask", "{p}",
                    "--out", "o-edit2.png"],
    "data validate": ["data", "validate", "{p}"],
    "data import-masks suite": ["data", "import-masks", "{p}", "edits"],
    "data import-hf source": ["data", "import-hf", "{p}", "--output", "o-hf"],
    "data import-hf --output": ["data", "import-hf", "hf", "--output", "{p}"],
    "data import-parts": ["data", "import-parts", "{p}", "--images", "edits", "--output", "o-ip"],
    "import-token file": ["import-token", "{p}", "--backbone", "tiny-sd", "--part",
                          "humanoid-head", "--output", "o-tok.safetensors"],
    "import-token --output": ["import-token", "token.pt", "--backbone", "tiny-sd", "--part",
                              "humanoid-head", "--output", "{p}"],
    "train-token --table": ["train-token", "--backbone", "tiny-sd", "--part", "humanoid-head",
                            "--table", "{p}", "--output-root", "o-tt", "--steps", "1",
                            "--images", "1", "--heldout", "1"],
    "train-token --output-root": ["train-token", "--backbone", "tiny-sd", "--part",
                                  "humanoid-head", "--output-root", "{p}", "--steps", "1",
                                  "--images", "1", "--heldout", "1"],
    "localize --output": ["localize", "--sources", "gt", "--limit", "1", "--output", "{p}"],
    "localize --sources": ["localize", "--sources", "{p}", "--limit", "1", "--output", "o-loc"],
    "maps run_dir": ["maps", "{p}", "identity/synth/pw0-00000__s0", "--output", "o-m.png"],
    "maps job": ["maps", "run", "{p}", "--output", "o-m2.png"],
    "maps --output": ["maps", "run", "identity/synth/pw0-00000__s0", "--output", "{p}"],
    "partworld train --out": ["partworld", "train", "--out", "{p}", "--stages", "export"],
    "partworld evaluate --classifier": ["partworld", "evaluate", "--classifier", "{p}",
                                        "--out", "o-pw", "--captions", "1", "--steps", "1"],
    "userstudy export --output": ["userstudy", "export", "run", "--pairs", "identity:noisy",
                                  "--output", "{p}"],
    "userstudy analyze answers": ["userstudy", "analyze", "{p}", "--output", "o-ua"],
    "userstudy analyze --key": ["userstudy", "analyze", "answers.csv", "--key", "{p}",
                                "--output", "o-ua2"],
    "userstudy analyze --output": ["userstudy", "analyze", "answers.csv", "--output", "{p}"],
}  # fmt: skip

#: Commands that load a backbone or train when the path is fine get fewer examples.
HEAVY = {
    "partworld evaluate --classifier", "edit --out", "edit --mask", "edit image",
    "import-token --output", "train-token --table", "train-token --output-root", "run --output",
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(PATH_COMMANDS))
def test_any_path_is_handled_in_one_line_and_nothing_outside_changes(
    sandbox, capsys, monkeypatch, command
):
    root, cwd = sandbox
    monkeypatch.chdir(cwd)
    template = PATH_COMMANDS[command]
    outside = {k: v for k, v in snapshot(root).items() if not k.startswith(str(Path("a") / "b"))}

    @bounded(4 if command in HEAVY else 10)
    @given(PATHS)
    def check(path):
        outcome(capsys, [a.replace("{p}", path) for a in template])
        now = {k: v for k, v in snapshot(root).items() if not k.startswith(str(Path("a") / "b"))}
        # a path may point up to two levels above the cwd: the sandbox's root. Nothing that
        # existed there changes; new files appear only where the path itself pointed
        assert {k: now[k] for k in outside if k in now} == outside
        assert set(outside) <= set(now)

    check()


def test_data_ids_never_write_outside_the_import(sandbox, capsys, tmp_path):
    """Row ids of an imported dataset become file names: any id is imported inside the
    output or refused in one line before anything is written."""
    counter = iter(range(10**6))

    @bounded(12)
    @given(NAMES)
    def check(row_id):
        n = next(counter)
        rows = hf_rows(2)
        rows[1]["id"] = row_id
        if row_id == "0":
            return  # a duplicate id, a case of its own
        source = hf_folder(tmp_path / "src", rows, f"hf{n}")
        base = tmp_path / f"case{n}"
        out = base / "deep" / "out"
        out.parent.mkdir(parents=True)
        before = snapshot(tmp_path)
        code = outcome(capsys, ["data", "import-hf", str(source), "--output", str(out)])
        after = snapshot(tmp_path)
        new = {k for k in after if k not in before}
        prefix = str(out.relative_to(tmp_path)) + os.sep
        assert all(k.startswith(prefix) for k in new), sorted(new)[:5]
        assert {k: after[k] for k in before} == before
        if code == 0:
            assert (out / "suite.yaml").is_file()

    check()


def test_data_names_never_leave_their_folder(sandbox, capsys, monkeypatch, tmp_path):
    """Suite names (import-hf --name, written under the data root) and method names
    (import-edits --name, written under the run folder) stay inside or are refused."""
    _, cwd = sandbox
    data = tmp_path / "data" / "root"
    monkeypatch.setenv("PARTEDIT_BENCH_DATA", str(data))

    @bounded(12)
    @given(NAMES)
    def check(name):
        run = tmp_path / "runs" / "r"
        for argv, inside in (
            (["data", "import-hf", str(cwd / "hf"), "--name", name], data),
            (["import-edits", str(cwd / "edits"), "--suite", "partworld", "--name", name,
              "--output", str(run)], run),
        ):  # fmt: skip
            before = snapshot(tmp_path)
            outcome(capsys, argv)
            after = snapshot(tmp_path)
            prefix = str(inside.relative_to(tmp_path)) + os.sep
            assert all(k.startswith(prefix) for k in after if k not in before)
            assert {k: after[k] for k in before} == before

    check()
