"""Methods live in `partedit_bench.methods`: a researcher's own `methods/` package beside the
command does not shadow them, and another distribution's method joins through the entry-point
group `partedit_bench.methods` (a throwaway distribution, found on the path as pip leaves one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import partedit_bench

REPO = Path(partedit_bench.__file__).resolve().parents[1]

METHOD = '''
from partedit_bench.api import EditMethod, EditResult


class Mine(EditMethod):
    """Returns the source, flipped left to right (a third-party method)."""

    name = "mine"
    uses_backbone = False

    def edit(self, request):
        from PIL import ImageOps

        return EditResult(image=ImageOps.mirror(request.image))
'''


def cli(args, cwd, extra_path=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if extra_path is not None:  # the distribution's "site-packages"
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "partedit_bench", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_an_unrelated_methods_package_does_not_shadow_the_suites(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "__init__.py").write_text("raise ImportError('a methods package')\n")
    done = cli(["list", "methods"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "partedit" in done.stdout and "blended_latent" in done.stdout


def test_an_entry_point_method_is_listed_and_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "mine_edit.py").write_text(METHOD)
    info = site / "mine_edit-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mine-edit\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[partedit_bench.methods]\nmine = mine_edit:Mine\n")
    listed = cli(["list", "methods"], tmp_path, site)
    assert listed.returncode == 0, listed.stderr
    assert "mine" in listed.stdout.split() or "│ mine" in listed.stdout
    out = tmp_path / "run"
    args = ["run", "--methods", "mine", "--backbone", "tiny-sd", "--limit", "1"]
    done = cli([*args, "--output", str(out)], tmp_path, site)
    assert done.returncode == 0, done.stderr
    (record,) = [
        json.loads(p.read_text())
        for p in out.glob("mine/*/*__s0.json")
        if not p.name.endswith(".metrics.json")
    ]
    assert record["status"] == "ok" and record["method"] == "mine"


def test_runs_are_quiet_unless_verbose_and_the_version_is_one_line(tmp_path):
    """The model libraries' loading bars and advisory warnings stay off the terminal (a run's
    output is its own progress and table); `--verbose` shows them; `--version` is one line."""
    args = ["run", "--methods", "identity", "--limit", "1"]  # (the backbone still loads)
    quiet = cli([*args, "--output", str(tmp_path / "q")], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    noise = ("Loading pipeline components", "accelerate", "Loading weights")
    assert not any(n in quiet.stderr + quiet.stdout for n in noise), quiet.stderr[-2000:]
    loud = cli(["--verbose", *args, "--output", str(tmp_path / "v")], tmp_path)
    assert loud.returncode == 0 and "Loading pipeline components" in loud.stderr
    version = cli(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("partedit-bench ")
    assert len(version.stdout.strip().splitlines()) == 1


def test_help_never_says_default_none(capsys):
    """A flag whose default is computed says so in its text, not "(default: None)"."""
    import pytest

    from partedit_bench.cli import main

    for command in (["run"], ["evaluate"], ["report"], ["edit"], ["token-study"]):
        with pytest.raises(SystemExit) as done:
            main([*command, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "(default: None)" not in text, command
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "run folder (default results/<suite>__<backbone>)" in capsys.readouterr().out


def test_a_bare_command_is_one_line_and_descriptions_are_whole_sentences(capsys):
    from partedit_bench.cli import main

    assert main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("partedit-bench: error: which command?") and "\n" not in err
    assert err.count("partedit-bench:") == 1
    assert main(["run", "--seeds"]) == 2
    assert "error: run: argument --seeds" in capsys.readouterr().err
    from partedit_bench.cli.run import first_sentence

    doc = """Denoises with the target prompt inside the mask (the GT mask by default, option
    `mask_source`), re-noised source outside.

    More detail."""
    assert first_sentence(doc) == (
        "Denoises with the target prompt inside the mask (the GT mask by default, option "
        "`mask_source`), re-noised source outside."
    )
    assert first_sentence("No full stop") == "No full stop"


def test_every_flag_has_help_that_states_its_default():
    """Every command's flags: a help text, and the default in it when the flag has one (a
    computed default is described in the text instead)."""
    import argparse

    from partedit_bench.cli import build_parser

    def walk(parser, path=""):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}".strip())
            elif action.dest != "help":
                yield path, action

    missing, silent = [], []
    for path, action in walk(build_parser()):
        flag = action.option_strings[0] if action.option_strings else action.dest
        if not action.help:
            missing.append(f"{path} {flag}")
        elif (
            action.default is not None
            and action.default is not False
            and action.default not in ([], "")
            and action.nargs != 0
            and "default" not in action.help
        ):
            silent.append(f"{path} {flag}")
    assert not missing, missing
    assert not silent, silent
