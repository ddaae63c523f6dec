"""StableFlow and Qwen-Image-Edit on their tiny backbones: StableFlow without vital layers is
plain FLUX generation row by row, its injection changes the edit rows only, its real-image path
ends the source row on the image; Qwen-Image-Edit's inputs reach its pipeline and the edit is
deterministic in its seed; all three DiT editors run, evaluate and report end to end, and a
report combines runs of two backbones into one table with a backbone column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import FluxPipeline

from partedit_bench.api import EditRequest
from partedit_bench.cli import main
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.editing import text_to_image
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.errors import UserError
from partedit_bench.methods.qwen_image_edit import QwenEditOptions, QwenImageEdit
from partedit_bench.methods.stable_flow import (
    OFFICIAL_VITAL,
    StableFlowOptions,
    encode_prompts,
    stable_flow_generate,
    stable_flow_real,
    vital_blocks,
    vital_injection,
)
from partedit_bench.store import iter_records
from tests.helpers import spy_on_pipe

PROMPTS = ["a photo of a man with a head", "a photo of a man with a robotic head"]


def generate(backbone, blocks, steps=3, seed=5):
    options = StableFlowOptions(steps=steps)
    pipe = backbone.pipeline(FluxPipeline)
    with vital_injection(backbone.components["transformer"], blocks) as state:
        return stable_flow_generate(pipe, backbone, PROMPTS, seed, options, state)


def test_vital_layers_are_the_official_nine_on_flux1_and_checked_elsewhere():
    assert (
        vital_blocks("auto", 19, 38) == [0, 1, 17, 18, 25, 28, 53, 54, 56] == list(OFFICIAL_VITAL)
    )
    assert vital_blocks("auto", 1, 2) == [0, 1, 2]  # the same relative depths on tiny-flux
    assert vital_blocks("none", 19, 38) == []
    assert vital_blocks("2,0,2", 1, 2) == [0, 2]
    with pytest.raises(UserError, match="outside this transformer's 0..2"):
        vital_blocks("3", 1, 2)
    with pytest.raises(UserError, match="must be auto, none or block indices"):
        vital_blocks("first", 1, 2)


def test_without_vital_layers_each_row_is_the_plain_generation(tiny):
    backbone = tiny("tiny-flux", "float64")
    rows = generate(backbone, [])
    for row, prompt in zip(rows, PROMPTS, strict=True):
        plain = text_to_image(backbone, prompt, 5, 3, 3.5, output_type="latent")[0]
        torch.testing.assert_close(row, plain, rtol=0, atol=1e-12)


def test_the_injection_changes_the_edit_row_only(tiny):
    backbone = tiny("tiny-flux", "float64")
    plain = generate(backbone, [])
    injected = generate(backbone, [0, 1, 2])
    assert torch.equal(injected[0], plain[0])  # the source row attends with its own K/V
    assert (injected[1] - plain[1]).abs().max() > 1e-5
    one = generate(backbone, [2])  # a single-stream block alone also reaches the edit row
    assert (one[1] - plain[1]).abs().max() > 0


def test_the_edit_row_takes_the_source_image_keys_and_keeps_its_text_keys(tiny):
    """The released processors' token ranges: double-stream `key[1:] = key[:1]` over the image
    projections, single-stream `key[1:, 512:] = key[:1, 512:]` after the text tokens."""
    backbone = tiny("tiny-flux", "float64")
    transformer = backbone.components["transformer"]
    double, single = (
        transformer.transformer_blocks[0].attn,
        transformer.single_transformer_blocks[0].attn,
    )
    keys = {}
    hooks = [
        attn.norm_k.register_forward_pre_hook(
            lambda m, args, name=name: keys.setdefault(name, args[0].clone())
        )
        for name, attn in (("double", double), ("single", single))
    ]
    try:
        generate(backbone, [0, 1], steps=1)  # block 1 = the first single-stream block
    finally:
        for hook in hooks:
            hook.remove()
    text = 512  # the text tokens before the image ones in a single-stream block
    assert torch.equal(keys["double"][1], keys["double"][0])  # image tokens only
    assert torch.equal(keys["single"][1, text:], keys["single"][0, text:])
    assert not torch.equal(keys["single"][1, :text], keys["single"][0, :text])  # own prompt


def test_the_real_path_ends_the_aligned_source_row_on_the_nudged_image(tiny):
    backbone = tiny("tiny-flux", "float64")
    image = load_image(load_suite("partworld").samples[0].original_image)
    pipe = backbone.pipeline(FluxPipeline)
    results = {}
    for path in ("aligned", "official"):
        options = StableFlowOptions(inversion_steps=4, source_path=path)
        with vital_injection(backbone.components["transformer"], [0, 1, 2]) as state:
            results[path] = stable_flow_real(pipe, backbone, PROMPTS, image, options, state)
    x0 = backbone.encode_images([image]) * 1.15
    packed = pipe._pack_latents(x0, 1, 16, x0.shape[-2], x0.shape[-1])
    assert torch.equal(results["aligned"][0], packed[0])
    assert not torch.equal(results["official"][0], packed[0])  # two inversion levels behind
    assert not torch.equal(results["aligned"][1], results["official"][1])
    embeds, _, _ = encode_prompts(pipe, backbone, PROMPTS, StableFlowOptions())
    assert embeds.shape[1] == 512  # the official max_sequence_length: the text tokens skipped


def test_qwen_image_edit_inputs_reach_the_pipeline_and_the_seed_decides(tiny):
    backbone = tiny("tiny-qwen-image")
    sample = load_suite("partworld").samples[0]
    sample.instructp2p_edit = ["make the head robotic"]
    method = QwenImageEdit(QwenEditOptions(steps=2))
    method.preflight(backbone, [sample])
    assert type(method.pipe).__name__ == "QwenImageEditPipeline" and method.steps == 2
    assert QwenImageEdit(QwenEditOptions()).options.steps == 0  # 0: the card's 50 (40 on 2509)
    with pytest.raises(UserError, match="steps=1 must be 0 .* or at least 2"):
        QwenEditOptions(steps=1)  # diffusers' terminal-shift schedule is 0 / 0 at one step
    seen = spy_on_pipe(method)
    image = load_image(sample.original_image)
    edits = [
        method.edit(EditRequest(sample=sample, image=image, seed=s, options=None)).image
        for s in (0, 0, 1)
    ]
    assert seen["prompt"] == "make the head robotic" and seen["true_cfg_scale"] == 4.0
    assert seen["negative_prompt"] == " " and seen["num_inference_steps"] == 2
    assert edits[0].size == (64, 64)
    assert np.array_equal(np.asarray(edits[0]), np.asarray(edits[1]))
    assert not np.array_equal(np.asarray(edits[0]), np.asarray(edits[2]))


def test_tiny_qwen_image_saves_and_loads_as_the_edit_pipeline(tmp_path, tiny):
    memory = tiny("tiny-qwen-image")
    memory.save(tmp_path / "q")
    index = json.loads((tmp_path / "q" / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPipeline" and "processor" in index
    folder = load_backbone(str(tmp_path / "q"))
    assert folder.family == "qwen-image" and folder.random_weights
    assert folder.fingerprint == memory.fingerprint and folder.resolution == 64


@pytest.mark.parametrize(
    "name,hub_id",
    [
        ("qwen-image-edit", "Qwen/Qwen-Image-Edit"),
        ("qwen-image-edit-plus", "Qwen/Qwen-Image-Edit-2509"),
        ("flux-dev", "black-forest-labs/FLUX.1-dev"),
    ],  # fmt: skip
)
def test_missing_dit_weights_fail_in_one_sentence(name, hub_id, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError) as info:
        load_backbone(name)
    assert hub_id in str(info.value) and "hf download" in str(info.value)
    assert "\n" not in str(info.value)


def records(out):
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in iter_records(out))}


def test_the_dit_editors_run_evaluate_and_report_and_one_table_names_the_backbones(tmp_path):
    flux, qwen, sd = tmp_path / "flux", tmp_path / "qwen", tmp_path / "sd"
    common = ["--limit", "1", "--set", "stable_flow.inversion_steps=3",
              "--set", "flux_kontext.steps=2", "--set", "qwen_image_edit.steps=2"]  # fmt: skip
    methods = "stable_flow,flux_kontext,qwen_image_edit,identity"
    for out, backbone in ((flux, "tiny-flux"), (qwen, "tiny-qwen-image"), (sd, "tiny-sd")):
        assert main(["run", "--backbone", backbone, "--methods", methods, *common,
                     "--output", str(out)]) == 0  # fmt: skip
    got = {name: records(out) for name, out in (("flux", flux), ("qwen", qwen), ("sd", sd))}
    ok = {
        name: sorted(v for v, r in recs.items() if r["status"] == "ok")
        for name, recs in got.items()
    }
    assert ok["flux"] == ["flux_kontext", "identity", "stable_flow"]
    assert ok["qwen"] == ["identity", "qwen_image_edit"]
    assert ok["sd"] == ["identity"]
    reason = got["sd"]["qwen_image_edit"]["error"]
    assert reason.startswith("qwen_image_edit supports qwen-image backbones, not sd")
    assert got["qwen"]["stable_flow"]["error"].startswith("stable_flow supports flux backbones")
    assert got["flux"]["stable_flow"]["extras"]["sampling"] == "real"  # partworld: not FLUX's
    for out in (flux, qwen):
        assert main(["evaluate", str(out), "--metrics", "psnr_bg"]) == 0
    combined = tmp_path / "table"
    assert main(["report", str(flux), str(qwen), str(sd), "--by-split",
                 "--output", str(combined)]) == 0  # fmt: skip
    table = pd.read_csv(combined / "table.csv")
    rows = table[(table.part == "all") & (table.metric == "psnr_bg")]
    methods_of = rows.variant.str.split("[").str[0]
    pairs = set(zip(methods_of, rows.backbone, strict=True))
    assert {("stable_flow", "tiny-flux"), ("flux_kontext", "tiny-flux"),
            ("qwen_image_edit", "tiny-qwen-image"), ("identity", "tiny-sd")} <= pairs  # fmt: skip
    assert ("stable_flow", "tiny-qwen-image") not in pairs  # skipped there: not a row
    assert set(rows.block) == {"synth"}
    assert rows.set_index(["variant", "backbone"]).loc[("identity", "tiny-qwen-image"), "n"] == 1
    assert (rows.n == 1).all()
    markdown = (combined / "table.md").read_text()
    assert "| variant | backbone |" in markdown
    assert "| qwen_image_edit[steps=2] | tiny-qwen-image |" in markdown
    latex = (combined / "table.tex").read_text()
    assert "qwen\\_image\\_edit[steps=2] & tiny-qwen-image" in latex


def test_the_real_size_dit_architectures_have_the_documented_parameter_counts():
    from partedit_bench.engine.flux import build_random_flux
    from partedit_bench.engine.qwen import build_random_qwen_image

    def billions(components):
        modules = {k: v for k, v in components.items() if isinstance(v, torch.nn.Module)}
        return {
            k: round(sum(p.numel() for p in m.parameters()) / 1e9, 2) for k, m in modules.items()
        }

    with torch.device("meta"):  # shapes only: no memory, no init cost
        flux = build_random_flux(torch.bfloat16)
        qwen = build_random_qwen_image(torch.bfloat16)
    # the README's memory table: FLUX.1-dev 11.90 + 4.76 + 0.12 + 0.08, Qwen-Image-Edit
    # 20.43 + 8.29 + 0.13 (billions)
    assert billions(flux) == {
        "transformer": 11.90, "text_encoder_2": 4.76, "text_encoder": 0.12, "vae": 0.08,
    }  # fmt: skip
    assert billions(qwen) == {"transformer": 20.43, "text_encoder": 8.29, "vae": 0.13}
    assert next(flux["transformer"].parameters()).dtype == torch.bfloat16
    blocks = flux["transformer"]
    assert (len(blocks.transformer_blocks), len(blocks.single_transformer_blocks)) == (19, 38)
    assert qwen["processor"].image_processor.size.longest_edge == 12845056  # (pixels)


@pytest.mark.parametrize(
    "method,family", [("stable_flow", "flux"), ("qwen_image_edit", "qwen-image")]
)
def test_the_edit_command_refuses_another_family_in_one_line(method, family, tmp_path, capsys):
    code = main(["edit", "--prompt", "a photo of a man", "--edit", "a robotic <humanoid-head>",
                 "--method", method, "--instruction", "x", "--backbone", "tiny-sd",
                 "--out", str(tmp_path / "e.png")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{method} supports {family} backbones, not sd" in err
    assert not list(tmp_path.iterdir())


def test_the_2509_plus_release_gets_its_pipeline_its_steps_and_a_list_of_images(tiny):
    backbone = tiny("tiny-qwen-image-plus")
    sample = load_suite("partworld").samples[0]
    method = QwenImageEdit(QwenEditOptions())
    method.preflight(backbone, [sample])
    assert type(method.pipe).__name__ == "QwenImageEditPlusPipeline" and method.steps == 40
    method.options.steps = 2
    seen = spy_on_pipe(method)
    image = load_image(sample.original_image)
    result = method.edit(EditRequest(sample=sample, image=image, seed=0, options=None))
    assert isinstance(seen["image"], list) and len(seen["image"]) == 1
    assert result.image.size == (64, 64) and result.extras["plus"]


def test_list_backbones_shows_the_dit_families_literally(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "FLUX.1 [dev] (flow-matching" in out  # brackets are text, not rich markup
    for name in ("qwen-image-edit-plus", "tiny-qwen-image", "random-flux", "random-qwen-image"):
        assert name in out


def test_flux_packing_equals_the_pipelines_own():
    """StableFlow packs latents with the engine's functions, not FluxPipeline's private ones:
    they agree with the pipeline's (a diffusers upgrade that changes them fails here)."""
    from diffusers import FluxPipeline

    from partedit_bench.engine.flux import latent_image_ids, pack_latents, unpack_latents

    x = torch.randn(2, 16, 8, 6, generator=torch.Generator().manual_seed(0))
    packed = pack_latents(x)
    assert torch.equal(packed, FluxPipeline._pack_latents(x, 2, 16, 8, 6))
    assert torch.equal(unpack_latents(packed, 8, 6), x)
    assert torch.equal(
        unpack_latents(packed, 8, 6), FluxPipeline._unpack_latents(packed, 64, 48, 8)
    )
    ids = latent_image_ids(4, 3, "cpu", torch.float64)
    assert torch.equal(ids, FluxPipeline._prepare_latent_image_ids(1, 4, 3, "cpu", torch.float64))
    assert ids[5].tolist() == [0.0, 1.0, 2.0]  # the patch of row 1, column 2
