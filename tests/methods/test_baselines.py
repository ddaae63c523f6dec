"""Baseline adapters: behaviour that must hold for each, and skips with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from partedit_bench.api import EditRequest
from partedit_bench.cli import main
from partedit_bench.data.schema import load_image, load_mask
from partedit_bench.data.suites import load_suite
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.methods.blended_latent import BlendedLatentOptions, blend
from partedit_bench.methods.ef_ddpm import EFDDPMOptions, edit_latents
from partedit_bench.store import iter_records
from tests.helpers import plain_generation


def request_for(sample, backbone, seed=0):
    image = load_image(sample.original_image)
    return EditRequest(
        sample=sample,
        image=image,
        seed=seed,
        options=None,
        backbone=backbone,
        mask=load_mask(sample.gt_mask, image.size),
    )


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_blended_latent_keeps_the_noised_source_outside_the_mask(name):
    backbone = load_backbone(name)
    sample = load_suite("partworld").samples[0]
    record: list = []
    result, latent_mask = blend(
        backbone, request_for(sample, backbone), BlendedLatentOptions(steps=8), record
    )
    assert len(record) == 6  # the first 25% of 8 steps are skipped
    outside = (1 - latent_mask).bool().expand_as(record[0][0])
    assert outside.any() and (~outside).any()
    for latents, noised_source in record:
        assert torch.equal(latents[outside], noised_source[outside])
    assert result.image.size == (64, 64)


def _guided(backbone, prompt, x, t, scale):
    embeds, added = backbone.encode_prompts(["", prompt])
    out = backbone.unet(
        torch.cat([x, x]), t, encoder_hidden_states=embeds, added_cond_kwargs=added
    ).sample
    return out[0:1] + scale * (out[1:2] - out[0:1])


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sd-v", "tiny-sdxl"])
def test_ef_ddpm_reconstructs_with_the_source_prompt(name):
    backbone = load_backbone(name, dtype="float64")
    sample = load_suite("partworld").samples[1]
    image = load_image(sample.original_image)
    options = EFDDPMOptions(steps=6, skip=0, cfg_src=3.5, cfg_tar=3.5, zero_last_noise=False)
    latents, _ = edit_latents(
        backbone, image, sample.prompt_original, sample.prompt_original, 0, options
    )
    x0 = backbone.encode_images([image])
    torch.testing.assert_close(latents, x0, rtol=0, atol=1e-8)
    # the reference's default zeroes the last noise map: off x0 by sigma_1 * z_1 exactly
    zeroed, _ = edit_latents(
        backbone,
        image,
        sample.prompt_original,
        sample.prompt_original,
        0,
        EFDDPMOptions(steps=6, skip=0, cfg_src=3.5, cfg_tar=3.5),
    )
    from partedit_bench.engine import inversion

    timesteps, alphas_cumprod = inversion.edit_friendly_timesteps(
        backbone.components["scheduler"], 6
    )
    a1, a0 = alphas_cumprod[timesteps[-1]].double(), alphas_cumprod[0].double()
    _, sigma_1 = inversion.ddpm_mean_sigma(x0, x0, a1, a0)
    exact = inversion.invert(
        lambda x, t: _guided(backbone, sample.prompt_original, x, t, 3.5),
        x0,
        backbone.components["scheduler"],
        6,
        torch.Generator("cpu").manual_seed(0),
        backbone.components["scheduler"].config.prediction_type,
    )
    gap = (zeroed - x0).abs().max()
    torch.testing.assert_close(gap, (sigma_1 * exact.zs[-1]).abs().max(), rtol=1e-6, atol=1e-10)
    assert gap > 1e-4
    edited, _ = edit_latents(
        backbone,
        image,
        sample.prompt_original,
        sample.p2p_template,
        0,
        EFDDPMOptions(steps=6, skip=2),
    )
    assert not torch.allclose(edited, latents)


def test_baselines_run_end_to_end_and_skip_with_reasons(tmp_path, capsys):
    methods = "blended_latent,ef_ddpm,ip2p"
    settings = [
        "--set",
        "blended_latent.steps=4",
        "--set",
        "ef_ddpm.steps=4",
        "--set",
        "ef_ddpm.skip=1",
        "--set",
        "ip2p.steps=2",
    ]
    for backbone in ("tiny-sd", "tiny-sdxl"):
        out = tmp_path / backbone
        assert (
            main(
                [
                    "run",
                    "--methods",
                    methods,
                    "--backbone",
                    backbone,
                    "--limit",
                    "2",
                    *settings,
                    "--output",
                    str(out),
                ]
            )
            == 0
        )
        statuses = {json.loads(p.read_text())["status"] for p in iter_records(out)}
        assert statuses == {"ok"}, backbone
    # a backbone folder whose family maps to a checkpoint that is not here: ip2p is skipped
    folder = tmp_path / "my-sd"
    load_backbone("tiny-sd").save(folder)
    out = tmp_path / "folder"
    assert (
        main(
            [
                "run",
                "--methods",
                "ip2p,identity",
                "--backbone",
                str(folder),
                "--limit",
                "2",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    records = [json.loads(p.read_text()) for p in iter_records(out)]
    skipped = [r for r in records if r["variant"] == "ip2p"]
    assert skipped and all(r["status"] == "skipped" for r in skipped)
    assert "timbrooks/instruct-pix2pix" in skipped[0]["error"]
    md = (out / "report" / "table.md").read_text()
    assert "ip2p: 2 job(s) skipped:" in md


def test_list_methods_shows_needs_families_checkpoints_and_masks(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list", "methods"]) == 0
    rows = {
        line.split("│")[1].strip(): line
        for line in capsys.readouterr().out.splitlines()
        if line.count("│") > 3 and line.split("│")[1].strip()
    }
    assert {"blended_latent", "ef_ddpm", "ip2p", "partedit", "identity"} <= set(rows)
    assert "mask" in rows["blended_latent"] and "│ yes" in rows["blended_latent"]
    assert "instruction" in rows["ip2p"] and "│ ip2p" in rows["ip2p"]
    assert "part_token" in rows["partedit"] and "sd,sdxl" in rows["partedit"]


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_masactrl_target_reads_the_source_keys_and_values(name):
    from partedit_bench.methods.masactrl import MasaCtrlOptions, controlled_layers, edit_latents

    backbone = load_backbone(name, dtype="float64")
    sample = load_suite("partworld").samples[2]
    image = load_image(sample.original_image)
    probe: list = []
    options = MasaCtrlOptions(steps=4, start_step=1, start_layer=10)
    edit_latents(backbone, image, sample.p2p_template, options, probe)
    layers = controlled_layers(backbone.unet, 10)
    assert layers and len(probe) == len(layers) * 3  # steps 1, 2, 3 of 4
    for entry in probe:
        assert torch.equal(entry["k"][1], entry["k"][0]) and torch.equal(
            entry["k"][3], entry["k"][2]
        )
        assert torch.equal(entry["v"][1], entry["v"][0])
    # with control starting after the last step, the target is plain DDIM generation
    late = MasaCtrlOptions(steps=4, start_step=4)
    controlled, _ = edit_latents(backbone, image, sample.p2p_template, late)
    from diffusers import DDIMScheduler

    from partedit_bench.engine import inversion

    embeds, added = backbone.encode_prompts(["", sample.p2p_template])
    unet = backbone.unet
    x0 = backbone.encode_images([image])
    _, trajectory = inversion.ddim_invert(
        lambda x, t: (
            unet(
                x,
                t,
                encoder_hidden_states=embeds[[0]],
                added_cond_kwargs=None if added is None else {k: v[[0]] for k, v in added.items()},
            ).sample
        ),
        x0,
        backbone.components["scheduler"],
        4,
        backbone.components["scheduler"].config.prediction_type,
    )
    scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
    scheduler.set_timesteps(4)
    x = trajectory[0]
    for t in scheduler.timesteps:
        out = unet(
            torch.cat([x, x]), t, encoder_hidden_states=embeds, added_cond_kwargs=added
        ).sample
        u, c = out.chunk(2)
        x = scheduler.step(u + 7.5 * (c - u), t, x).prev_sample
    torch.testing.assert_close(controlled[1:2], x, rtol=0, atol=1e-9)


def test_masactrl_layer_mapping_is_proportional():
    from partedit_bench.methods.masactrl import controlled_layers, self_attention_layers

    unet = load_backbone("tiny-sd").unet
    total = len(self_attention_layers(unet))
    assert len(controlled_layers(unet, 10)) == total - round(10 / 16 * total)
    assert controlled_layers(unet, 16) == []


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_p2p_replaces_maps_during_the_replacement_steps_and_blends_locally(name):
    from partedit_bench.methods.p2p import P2POptions, edit_latents

    backbone = load_backbone(name, dtype="float64")
    sample = next(s for s in load_suite("partworld").samples if s.part_token == "car-body")
    request = request_for(sample, backbone)
    probe: list = []
    record: list = []
    # a high threshold so that the random-weight maps leave some latents outside the mask
    options = P2POptions(
        steps=5,
        cross_replace=0.4,
        self_replace=0.4,
        blend_start=0.0,
        blend_threshold=0.95,
        null_text=False,
    )
    latents, extras = edit_latents(backbone, request, options, probe, record)
    assert extras["mode"] == "replace" and extras["blend_positions"][0]
    during = [p for p in probe if p["step"] < 2]
    after = [p for p in probe if p["step"] >= 2]
    assert during and after
    assert all(torch.equal(p["src"], p["tgt"]) for p in during)  # replaced tokens: all (swap)
    assert any(not torch.allclose(p["src"], p["tgt"]) for p in after)
    # Local Blend: outside its mask the target is the source (the 4 x 4 maps of the tiny UNets
    # may max-pool to the whole latent; the mask itself is checked on hand-made maps below)
    assert record
    for blended, mask in record:
        outside = (~mask).expand_as(blended[1])
        assert torch.equal(blended[1][outside], blended[0][outside])


def test_local_blend_mask_on_hand_made_maps():
    from partedit_bench.methods.p2p import local_blend_mask

    src = torch.zeros(64, 77)  # an 8 x 8 map, word at token 3
    src[9, 3] = 1.0  # one cell at (1, 1)
    tgt = torch.zeros(64, 77)
    tgt[54, 5] = 1.0  # (6, 6), word at token 5 in the target prompt
    mask = local_blend_mask(torch.stack([src, tgt]), [[3], [5]], (8, 8), 0.3)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:3, 0:3] = True  # 3x3 max-pool around (1, 1)
    expected[5:8, 5:8] = True  # and around (6, 6): the union
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_p2p_null_text_inversion_reconstructs_better_than_ddim(name):
    import dataclasses

    from partedit_bench.methods.p2p import P2POptions, edit_latents

    backbone = load_backbone(name, dtype="float64")  # (SDXL: with its added conditioning)
    sample = load_suite("partworld").samples[0]
    same = dataclasses.replace(sample, p2p_template=sample.p2p_prompt)  # no edit
    request = request_for(same, backbone)
    x0 = backbone.encode_images([request.image])
    errors = {}
    for null_text in (False, True):
        options = P2POptions(
            steps=4, local_blend=False, null_text=null_text, null_text_inner_steps=20
        )
        latents, extras = edit_latents(backbone, request, options)
        errors[null_text] = float((latents[0] - x0[0]).abs().mean())
        assert extras["inversion"] == ("null-text" if null_text else "ddim")
    # random tiny weights barely respond to the embedding, so the gain is small but real
    assert errors[True] < errors[False], errors


def test_p2p_leaves_the_unconditional_rows_alone():
    from diffusers.models.attention_processor import AttnProcessor

    from partedit_bench.engine.attention import processors
    from partedit_bench.methods.p2p import P2PProcessor, P2PState, replacement_for

    backbone = load_backbone("tiny-sd", dtype="float64")
    unet, tokenizer = backbone.unet, backbone.components["tokenizer"]
    source, target = "a photo of a cat", "a photo of a dog"
    embeds, _ = backbone.encode_prompts(["", "", source, target])
    x = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = P2PState(
        cross_steps=1,
        self_steps=1,
        self_max_tokens=10**6,
        replacement=replacement_for(tokenizer, source, target),
    )
    names = [n.removesuffix(".processor") for n in unet.attn_processors]
    with processors(unet, {n: P2PProcessor(n, state) for n in names}):
        controlled = unet(x, 500, encoder_hidden_states=embeds).sample
    with processors(unet, {n: AttnProcessor() for n in names}):
        plain = unet(x, 500, encoder_hidden_states=embeds).sample
    torch.testing.assert_close(controlled[:3], plain[:3], rtol=0, atol=1e-12)  # uncond + source
    assert not torch.allclose(controlled[3], plain[3])


def test_p2p_null_text_embeddings_are_one_per_step():
    from diffusers import DDIMScheduler

    from partedit_bench.engine import inversion
    from partedit_bench.methods.p2p.null_text import null_text_optimization

    backbone = load_backbone("tiny-sd", dtype="float64")
    x0 = backbone.encode_images([load_image(load_suite("partworld").samples[0].original_image)])
    embeds, _ = backbone.encode_prompts(["", "a photo"])

    def predict(x, t):
        return backbone.unet(x, t, encoder_hidden_states=embeds[1:]).sample

    _, trajectory = inversion.ddim_invert(
        predict, x0, backbone.components["scheduler"], 3, "epsilon"
    )
    scheduler = DDIMScheduler.from_config(backbone.components["scheduler"].config)
    scheduler.set_timesteps(3)
    out = null_text_optimization(
        backbone,
        trajectory,
        scheduler.timesteps,
        scheduler,
        (embeds[1:], None),
        (embeds[:1], None),
        7.5,
        3,
    )
    assert len(out) == 3
    assert len({t.data_ptr() for t in out}) == 3  # no two steps share storage
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    assert not torch.equal(out[0], embeds[:1])  # optimized away from the empty prompt


def test_p2p_local_blend_reads_the_running_sum_of_the_maps():
    from partedit_bench.methods.p2p import P2POptions, edit_latents, local_blend_mask

    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = next(s for s in load_suite("partworld").samples if s.part_token == "car-body")
    probe: list = []
    record: list = []
    options = P2POptions(steps=4, blend_start=0.0, blend_threshold=0.99, null_text=False)
    _, extras = edit_latents(backbone, request_for(sample, backbone), options, probe, record)
    assert len(record) == 4
    assert 0 < int(record[0][1].sum()) < 256  # a mask that is not the whole latent
    size = 16 // 4
    for step, (_, mask) in enumerate(record):
        maps = [
            torch.stack([p["src"], p["tgt"]]).sum(1)
            for p in probe
            if p["step"] <= step
            and p["src"].shape[1] == size * size
            and not p["name"].startswith("mid_block")
        ]
        running = torch.stack(maps).sum(0)
        expected = local_blend_mask(running, extras["blend_positions"], (16, 16), 0.99)
        assert torch.equal(mask.cpu(), expected)
    # the last step's maps alone give another mask here: the sum is what is read
    last = torch.stack(
        [
            torch.stack([p["src"], p["tgt"]]).sum(1)
            for p in probe
            if p["step"] == 3
            and p["src"].shape[1] == size * size
            and not p["name"].startswith("mid_block")
        ]
    ).sum(0)
    alone = local_blend_mask(last, extras["blend_positions"], (16, 16), 0.99)
    assert not torch.equal(alone, record[-1][1].cpu())


def test_p2p_replace_or_refine_by_word_count_and_the_refine_mapping():
    from partedit_bench.engine.alignment import refinement_mapper
    from partedit_bench.methods.p2p import replacement_for

    tokenizer = load_backbone("tiny-sd").components["tokenizer"]
    # same word count, different token count: still a word swap (Replace)
    swap = replacement_for(tokenizer, "a cat on grass", "a zebrafish on grass")
    assert swap.mode == "replace" and swap.mapper[2, 2] == swap.mapper[2, 3] == 0.5
    refine = replacement_for(tokenizer, "a cat on grass", "a big cat on grass")
    assert refine.mode == "refine"
    mapper, alphas = refinement_mapper(tokenizer, "a cat on grass", "a big cat on grass")
    # [SOT a big cat on grass EOT]: "big" has no source token; padding maps onto itself
    assert mapper[:7].tolist() == [0, 1, -1, 2, 3, 4, 5]
    assert alphas[:7].tolist() == [1, 1, 0, 1, 1, 1, 1]
    assert mapper[7:].tolist() == list(range(7, 77)) and bool((alphas[7:] == 1).all())


def test_p2p_cross_replacement_steps_follow_the_reference_alpha():
    from partedit_bench.methods.p2p import P2POptions, edit_latents

    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = next(s for s in load_suite("partworld").samples if s.part_token == "car-body")
    for steps, replaced in ((4, 2), (6, 2), (8, 3)):  # int(0.4 (T + 1))
        probe: list = []
        options = P2POptions(steps=steps, local_blend=False, null_text=False, self_replace=0.0)
        edit_latents(backbone, request_for(sample, backbone), options, probe)
        same = {p["step"] for p in probe if torch.equal(p["src"], p["tgt"])}
        assert same == set(range(replaced)), (steps, same)


def test_blended_latent_mask_equals_pil_nearest():
    import numpy as np
    from PIL import Image

    from partedit_bench.methods.blended_latent import latent_mask

    x = torch.zeros(1, 4, 16, 16)
    for sample in load_suite("partworld").samples:
        mask = load_mask(sample.gt_mask, (64, 64))
        pil = Image.fromarray(mask.astype(np.uint8) * 255).resize((16, 16), Image.NEAREST)
        expected = torch.from_numpy(np.asarray(pil) / 255 >= 0.5).float()
        assert torch.equal(latent_mask(mask, (16, 16), x)[0, 0], expected), sample.id


def test_blended_latent_reference_samplers():
    from partedit_bench.methods.blended_latent import reference_scheduler

    sd = reference_scheduler(load_backbone("tiny-sd"))
    sd.set_timesteps(50)
    assert int(sd.timesteps[0]) == 980 and int(sd.timesteps[-1]) == 0
    assert not sd.config.clip_sample
    assert (
        type(reference_scheduler(load_backbone("tiny-sdxl"))).__name__ == "EulerDiscreteScheduler"
    )


def test_p2p_synthetic_mode_regenerates_the_suite_image_from_its_seed():
    import dataclasses

    from partedit_bench.methods.p2p import P2POptions, edit_latents

    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = load_suite("partworld").samples[3]
    request = dataclasses.replace(request_for(sample, backbone), synthetic=True)
    options = P2POptions(steps=3, cross_replace=0.0, self_replace=0.0, local_blend=False)
    latents, extras = edit_latents(backbone, request, options)
    assert extras["inversion"] == "none" and extras["source_prompt"] == sample.prompt_original

    def generate(prompt):
        return plain_generation(backbone, prompt, sample.seed, 3)

    # with nothing replaced and no Local Blend, each row is plain generation from the x_T
    torch.testing.assert_close(latents[0:1], generate(sample.prompt_original), rtol=0, atol=1e-9)
    torch.testing.assert_close(latents[1:2], generate(extras["target_prompt"]), rtol=0, atol=1e-9)


def test_masactrl_synthetic_mode_starts_from_the_suite_images_seed():
    import dataclasses

    from partedit_bench.methods.masactrl import MasaCtrl, MasaCtrlOptions, edit_latents

    backbone = load_backbone("tiny-sd", dtype="float64")
    sample = load_suite("partworld").samples[3]
    target = sample.prompt_changed.replace(f"<{sample.part_token}>", sample.part)
    free = MasaCtrlOptions(steps=3, start_step=3)  # control never starts
    latents, extras = edit_latents(
        backbone, None, target, free, synthetic_from=(sample.prompt_original, sample.seed)
    )
    assert extras["sampling"] == "synthetic" and extras["source_prompt"] == sample.prompt_original

    def generate(prompt):
        return plain_generation(backbone, prompt, sample.seed, 3)

    torch.testing.assert_close(latents[0:1], generate(sample.prompt_original), rtol=0, atol=1e-9)
    torch.testing.assert_close(latents[1:2], generate(target), rtol=0, atol=1e-9)
    # and the adapter takes that path when the suite's images are this backbone's
    method = MasaCtrl(MasaCtrlOptions(steps=2, start_step=0))
    method.load(backbone)
    request = dataclasses.replace(request_for(sample, backbone), synthetic=True)
    assert method.edit(request).extras["sampling"] == "synthetic"


def test_blended_latent_resizes_its_source_bilinearly_as_the_reference_scripts():
    """Both reference scripts resize the source with `Image.BILINEAR` then scale by 1/127.5 - 1
    (text_editing_SD2.py:82, 158): at a size where a resize happens (96 px onto tiny-sd's 64),
    the latents blended_latent encodes equal that computation by hand; `resize=bicubic` (the
    suite's shared encoder) differs."""
    import numpy as np
    from PIL import Image

    backbone = load_backbone("tiny-sd")
    sample = load_suite("partworld").samples[0]
    big = load_image(sample.original_image).resize((96, 96), Image.Resampling.LANCZOS)
    request = request_for(sample, backbone)
    mask = load_mask(sample.gt_mask, (64, 64))
    mask = np.asarray(Image.fromarray(mask).resize((96, 96), Image.Resampling.NEAREST))
    request = EditRequest(request.sample, big, 0, None, backbone, mask)
    seen = []
    encode = backbone.encode_images

    def spy(images, resample=None):
        seen.append(encode(images, resample))
        return seen[-1]

    backbone.encode_images = spy
    try:
        blend(backbone, request, BlendedLatentOptions(steps=2))
        blend(backbone, request, BlendedLatentOptions(steps=2, resize="bicubic"))
    finally:
        backbone.encode_images = encode
    pixels = np.asarray(big.resize((64, 64), Image.BILINEAR))[:, :, :3].astype(np.float32)
    x = torch.from_numpy(pixels / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        by_hand = backbone.vae.encode(x).latent_dist.mean * backbone.vae.config.scaling_factor
    # (to float32 rounding of the VAE: 9e-6 here; the other filter moves them by > 1e-3)
    assert (seen[0] - by_hand).abs().max() < 1e-5, float((seen[0] - by_hand).abs().max())
    assert not torch.allclose(seen[1], by_hand, atol=1e-3)


#: prompt-to-prompt's notebooks' final latents (tiny-sd, float64), stored by
#: `benchmarks/parity/p2p.py --store` (the file names the command)
P2P_STORED = json.loads(
    (Path(__file__).with_name("reference") / "p2p_official_latents.json").read_text()
)


@pytest.mark.parametrize("case", sorted(P2P_STORED["latents"]))
def test_p2p_equals_the_notebooks_stored_latents(case):
    """prompt-to-prompt's notebooks' final latents (null-text inversion with Replace, Refine with
    Local Blend, the generation notebook), stored by the parity harness with the command the
    file names; ours recomputed through the harness's own side (float64 alpha tables, its glue
    G5) must equal them."""
    from benchmarks.parity.p2p import ours

    mine = ours(case)[0]
    expected = torch.tensor(P2P_STORED["latents"][case], dtype=torch.float64)
    assert float((mine.flatten() - expected).abs().max()) <= 1e-9


def test_p2p_local_blend_mask_by_hand():
    from partedit_bench.methods.p2p import local_blend_mask

    maps = torch.zeros(2, 16, 77)  # 4 x 4 maps of the source and target rows
    maps[0, 5, 3] = 1.0  # source: word at token 3, pixel (1, 1)
    maps[1, 15, 4] = 2.0  # target: word at token 4, pixel (3, 3)
    maps[1, 0, 4] = 1.0  # and half as much at (0, 0)
    mask = local_blend_mask(maps, [[3], [4]], (8, 8), 0.3)
    # each row: 3 x 3 max-pool (stride 1), nearest x2, / its max, > 0.3; the union
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:6, 0:6] = True  # the source pixel's pool (0..2, 0..2), doubled
    expected[4:8, 4:8] = True  # the target's (2..3, 2..3)
    expected[0:4, 0:4] = True  # the target's half-strength pool: 0.5 > 0.3 (inside the first)
    assert torch.equal(mask, expected)
    high = local_blend_mask(maps, [[3], [4]], (8, 8), 0.6)  # the half-strength pool drops
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:6, 0:6] = expected[4:8, 4:8] = True
    assert torch.equal(high, expected)
    assert not local_blend_mask(maps, [[3], [4]], (8, 8), 1.0).any()  # strictly above 1: none
    only_target = local_blend_mask(maps, [[], [4]], (8, 8), 0.6)  # no source word: its row skipped
    assert torch.equal(only_target[4:, 4:], torch.ones(4, 4, dtype=torch.bool))
    assert not only_target[:4, :4].any()
    none = local_blend_mask(maps, [[], []], (8, 8), 0.3)  # no blend word at all: everything
    assert none.dtype == torch.bool and none.shape == (8, 8) and bool(none.all())


@pytest.mark.parametrize(
    "key, value, line",
    [
        ("steps", 0, "option p2p.steps=0 must be at least 1"),
        ("cross_replace", 1.5, "option p2p.cross_replace=1.5 must be in [0, 1]"),
        ("self_replace", -0.1, "option p2p.self_replace=-0.1 must be in [0, 1]"),
        ("blend_start", 1.01, "option p2p.blend_start=1.01 must be in [0, 1]"),
        ("null_text_inner_steps", 0, "option p2p.null_text_inner_steps=0 must be at least 1"),
    ],
)
def test_p2p_options_out_of_range_are_one_line_naming_them(key, value, line):
    from partedit_bench.errors import UserError
    from partedit_bench.methods.p2p import P2POptions

    with pytest.raises(UserError) as raised:
        P2POptions(**{key: value})
    assert str(raised.value) == line
    edge = {"steps": 1, "null_text_inner_steps": 1}.get(key, 1.0)  # the bound itself is valid
    assert getattr(P2POptions(**{key: edge}), key) == edge


def test_p2p_self_attention_limit_by_family_and_mode():
    from partedit_bench.methods.p2p import P2POptions, self_limit

    options = P2POptions()
    assert self_limit("sd", (16, 16), options) == 64  # real images: (latent / 2)^2
    assert self_limit("sd", (16, 16), options, synthetic=True) == 16  # generation: (latent / 4)^2
    assert self_limit("sdxl", (16, 16), options) == 16  # the SDXL port: (latent / 4)^2
    assert self_limit("sd", (16, 16), P2POptions(self_max_tokens=1)) == 1  # set: taken as is
    odd = self_limit("sd", (13, 13), options)  # whole layer sides: 6 x 6, not 6.5 x 6.5
    assert odd == 36 and isinstance(odd, int)


def test_p2p_refuses_an_attention_mask_naming_itself_and_records_its_extras():
    from diffusers.models.attention_processor import Attention

    from partedit_bench.methods.p2p import P2POptions, P2PProcessor, P2PState, PromptToPrompt

    attn = Attention(query_dim=8, heads=2, dim_head=4)
    hidden = torch.randn(2, 16, 8)
    with pytest.raises(NotImplementedError, match=r"^p2p implements .*an attention mask"):
        P2PProcessor("down.attn1", P2PState())(attn, hidden, attention_mask=torch.zeros(2, 1, 16))
    backbone = load_backbone("tiny-sd", dtype="float64")
    method = PromptToPrompt(P2POptions(steps=2, null_text=False))
    method.load(backbone)
    sample = load_suite("partworld").samples[3]
    result = method.edit(request_for(sample, backbone))
    assert result.extras["mode"] == "replace" and result.extras["inversion"] == "ddim"
    assert result.extras["target_prompt"] == "a photo of a gray horse with a red head on a beach"


def test_null_text_optimization_stops_early_once_the_step_lands_on_the_trajectory():
    """The reference's early stop (loss < 1e-5 + 2e-5 i): with a prediction that already
    reproduces the inverted trajectory the loss is 0, so each step runs one inner step."""
    from types import SimpleNamespace

    from diffusers import DDIMScheduler

    from partedit_bench.methods.p2p.null_text import null_text_optimization

    calls = []

    def unet(latent, t, encoder_hidden_states, added_cond_kwargs=None):
        calls.append(int(t))  # a prediction of 0 that still depends on the embedding
        return SimpleNamespace(sample=0 * latent + 0 * encoder_hidden_states.sum())

    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.set_timesteps(4)
    trajectory = [torch.randn(1, 4, 4, 4, dtype=torch.float64)]
    for t in scheduler.timesteps:  # the guided DDIM steps with a zero prediction
        trajectory.append(
            scheduler.step(torch.zeros_like(trajectory[-1]), t, trajectory[-1]).prev_sample
        )
    embedding = torch.randn(1, 3, 8, dtype=torch.float64)
    out = null_text_optimization(
        SimpleNamespace(unet=unet), trajectory, scheduler.timesteps, scheduler,
        (embedding, None), (embedding.clone(), None), 7.5, inner_steps=5,
    )  # fmt: skip
    assert len(out) == 4 and all(torch.equal(e, embedding) for e in out)  # nothing to correct
    assert len(calls) == 4 * 3  # per step: the conditional call, one inner step, the step
