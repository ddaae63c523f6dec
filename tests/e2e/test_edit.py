"""`partedit-bench edit` and `partedit_bench.edit`: one part edit on one image (a shipped photo)
or on one generated from the prompt, with any method; bad input gets one line, exit 2, and
nothing written."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from partedit_bench.cli import main
from tests.conftest import REPO

PROMPT, EDIT = "a photo of a woman", "a photo of a woman with a robotic <humanoid-head>"
FAST = ["--steps", "4"]


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_edit_of_a_photo_writes_the_edit_its_mask_and_overlay(tmp_path, astronaut, capsys):
    out = tmp_path / "out" / "edited.png"
    args = ["edit", str(astronaut), "--prompt", PROMPT, "--edit", EDIT, "--out", str(out), *FAST]
    assert main([*args, "--t-e", "4"]) == 0
    printed = capsys.readouterr().out
    for name in ("edited.png", "edited_mask.png", "edited_overlay.png"):
        assert (out.parent / name).is_file() and str(out.parent / name) in printed
    assert not (out.parent / "edited_source.png").exists()  # the source was the photo
    assert re.search(r"edited with partedit on partworld-sd: [\d.]+ s for the edit", printed)
    source = Image.open(astronaut)
    edited, mask = Image.open(out), Image.open(out.parent / "edited_mask.png")
    assert edited.size == mask.size == source.size == (512, 512) and mask.mode == "L"
    assert not np.array_equal(np.asarray(edited), np.asarray(source.convert("RGB")))


def test_without_an_image_the_source_is_generated_from_prompt_and_seed(tmp_path, capsys):
    from partedit_bench.editing import cached_backbone, generate_source
    from partedit_bench.methods.partedit.options import PartEditOptions

    out = tmp_path / "syn.png"
    args = ["edit", "--prompt", PROMPT, "--edit", EDIT, "--seed", "3", "--out", str(out), *FAST]
    assert main(args) == 0
    assert "generated, then edited with partedit" in capsys.readouterr().out
    source = Image.open(tmp_path / "syn_source.png")
    again = generate_source(cached_backbone("partworld-sd"), PROMPT, 3, PartEditOptions(steps=4))
    assert np.array_equal(np.asarray(source), np.asarray(again))


@pytest.mark.parametrize("method", ["p2p", "ledits_pp", "masactrl", "ef_ddpm"])
def test_any_method_of_the_registry_edits(tmp_path, astronaut, method):
    out = tmp_path / f"{method}.png"
    args = ["edit", str(astronaut), "--prompt", PROMPT, "--edit", EDIT, "--method", method]
    assert main([*args, "--out", str(out), "--steps", "6"]) == 0
    assert Image.open(out).size == (512, 512)


def test_a_method_given_a_mask_edits_inside_it(tmp_path, astronaut):
    mask = np.zeros((512, 512), np.uint8)
    mask[40:200, 150:330] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "blended.png"
    mask_file = str(tmp_path / "mask.png")
    args = ["edit", str(astronaut), "--prompt", PROMPT, "--edit", EDIT, "--method",
            "blended_latent", "--mask", mask_file, "--out", str(out), *FAST]  # fmt: skip
    assert main(args) == 0 and Image.open(out).size == (512, 512)


def test_the_python_api_of_the_readme(tmp_path, monkeypatch):
    """The README's Python example, run as written with the shipped backbone (its SDXL line
    needs the real weights): what it returns (tests/e2e/test_readme.py runs it as a process)."""
    readme = (REPO / "README.md").read_text()
    pattern = r"```python\n(from PIL import Image\n.*?from partedit_bench import edit\n.*?)```"
    block = re.search(pattern, readme, re.S).group(1)
    assert 'backbone="partworld-sd"' in block
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    result = scope["result"]
    assert not list(tmp_path.iterdir())  # it writes nothing
    assert result.mask.shape == (512, 512) and result.mask.dtype == np.float32
    assert 0 <= result.mask.min() and result.mask.max() <= 1
    assert result.image.size == result.source.size == (512, 512)


def bad(tmp_path, capsys, *args: str) -> str:
    out = tmp_path / "out"
    code = main(["edit", *args, "--out", str(out / "e.png"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert not out.exists()  # nothing written
    return err


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, astronaut, capsys):
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    assert "cannot read" in bad(tmp_path, capsys, str(junk), "--prompt", PROMPT, "--edit", EDIT)
    assert "image not found" in bad(
        tmp_path, capsys, str(tmp_path / "nope.png"), "--prompt", PROMPT, "--edit", EDIT
    )
    assert "names no part" in bad(
        tmp_path, capsys, str(astronaut), "--prompt", PROMPT, "--edit", "a robot woman"
    )
    assert "unknown part <wing>" in bad(
        tmp_path, capsys, str(astronaut), "--prompt", PROMPT, "--edit", "a <wing>"
    )
    err = bad(tmp_path, capsys, str(astronaut), "--prompt", PROMPT, "--edit", EDIT,
              "--backbone", "tiny-sd-v")  # fmt: skip
    assert "train-token" in err and "import-token" in err and "humanoid-head" in err
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    err = bad(tmp_path, capsys, str(astronaut), "--prompt", PROMPT, "--edit", EDIT,
              "--method", "blended_latent", "--mask", str(small))  # fmt: skip
    assert "10x10" in err or "size" in err
    assert "--mask" in bad(tmp_path, capsys, str(astronaut), "--prompt", PROMPT, "--edit", EDIT,
                           "--method", "blended_latent")  # fmt: skip
    assert "--instruction" in bad(tmp_path, capsys, str(astronaut), "--prompt", PROMPT,
                                  "--edit", EDIT, "--method", "ip2p")  # fmt: skip
    assert "unknown method" in bad(tmp_path, capsys, str(astronaut), "--prompt", PROMPT,
                                   "--edit", EDIT, "--method", "partedt")  # fmt: skip
    assert "has no option" in bad(tmp_path, capsys, str(astronaut), "--prompt", PROMPT,
                                  "--edit", EDIT, "--set", "partedit.omegaa=1")  # fmt: skip


def test_what_needs_no_model_is_refused_before_the_backbone_loads(
    tmp_path, astronaut, capsys, monkeypatch
):
    """A missing mask, a missing instruction and a method-backbone pair that cannot run are
    one line before any model loads (the backbone's loader is made to fail here)."""
    from partedit_bench import editing
    from partedit_bench.engine import backbones

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(backbones, "load_backbone", no_model)
    monkeypatch.setattr(editing, "cached_backbone", no_model)
    common = [str(astronaut), "--prompt", PROMPT, "--edit", EDIT]
    assert "pass --mask" in bad(tmp_path, capsys, *common, "--method", "blended_latent")
    assert "--instruction" in bad(tmp_path, capsys, *common, "--method", "ip2p")
    err = bad(tmp_path, capsys, *common, "--method", "ip2p", "--instruction", "make it red")
    assert "ip2p cannot run on partworld-sd: no ip2p checkpoint was trained" in err
    err = bad(tmp_path, capsys, *common, "--method", "sdxl_inpaint", "--mask", str(astronaut))
    assert "sdxl_inpaint supports sdxl backbones, not sd (partworld-sd)" in err
    err = bad(tmp_path, capsys, *common, "--method", "stable_flow", "--backbone", "tiny-sdxl")
    assert "stable_flow supports flux backbones, not sdxl (tiny-sdxl)" in err
