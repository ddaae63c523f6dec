"""The README's runnable commands, as written: every fenced block right after the comment
`<!-- the test suite runs this block as written ... -->` is run (bash blocks with bash from
the repository root, python blocks with the project's interpreter), must succeed, and must
leave the checkout as it was (what they write goes outside it: `$OUT=$(mktemp -d)`, here a
folder under the test's tmp_path)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env

MARK = "<!-- the test suite runs this block as written"


def marked_blocks() -> list[tuple[str, str]]:
    """(language, code) of each marked block of the README."""
    text = (REPO / "README.md").read_text()
    pattern = re.escape(MARK) + r"[^\n]*-->\n```(\w+)\n(.*?)\n```"
    return re.findall(pattern, text, flags=re.S)


def test_the_readme_marks_its_runnable_blocks():
    languages = [language for language, _ in marked_blocks()]
    assert languages.count("bash") >= 1 and languages.count("python") >= 1, languages


def checkout_state() -> str:
    """Every file of the checkout git sees, changed or new (ignored folders aside)."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.mark.parametrize("index", range(len(marked_blocks())))
def test_a_readme_block_runs_as_written_and_writes_outside_the_checkout(index, tmp_path):
    language, code = marked_blocks()[index]
    env = cli_env()
    env["TMPDIR"] = str(tmp_path)  # mktemp -d (and tempfile) land in the test's folder
    env["PATH"] = os.pathsep.join([str(os.path.dirname(sys.executable)), env.get("PATH", "")])
    before = checkout_state()
    if language == "bash":
        # as written where the checkout has its .venv (make test, CI); else the interpreter
        # running the tests stands in for it
        written = code if (REPO / ".venv" / "bin").is_dir() else code.replace(".venv/bin/", "")
        command = ["bash", "-euo", "pipefail", "-c", written]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (code, done.stderr[-3000:])
    assert checkout_state() == before  # nothing written into the checkout
    if language == "bash":
        written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
        assert {"astronaut.png", "edited.png", "edited_mask.png", "edited_overlay.png"} <= written
