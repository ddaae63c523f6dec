"""PartEdit: the 2-path method equals the official 3-path formulation; behaviour that must
hold (t_e = 0, an all-zero mask, inversion), thresholds, multi-part, v-prediction, end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from partedit_bench.cli import main
from partedit_bench.data.schema import load_image
from partedit_bench.data.suites import load_suite
from partedit_bench.engine import inversion
from partedit_bench.engine.alignment import NotWordAligned
from partedit_bench.engine.attention import decoder_cross_attention_layers
from partedit_bench.engine.backbones import load_backbone
from partedit_bench.methods.partedit import core, words
from partedit_bench.methods.partedit.options import PartEditOptions, parts_of, plain_prompt
from partedit_bench.methods.partedit.sampling import run_partedit
from partedit_bench.tokens import PartToken
from tests.helpers import plain_generation

FAST = PartEditOptions(steps=3)


@pytest.fixture(scope="module")
def backbones(tiny):
    return {name: tiny(name, "float64") for name in ("tiny-sd", "tiny-sdxl")}


def random_tokens(backbone, parts, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layers = decoder_cross_attention_layers(backbone.unet, 8)
    return {
        p: PartToken(
            torch.randn(2, backbone.text_width, generator=generator),
            {"part": p, "layers": layers, "fingerprint": backbone.fingerprint},
        )
        for p in parts
    }


def sample_of(part="animal-head", suite="partworld"):
    return next(s for s in load_suite(suite).samples if s.part_token == part)


#: The released pipeline's final latents (Gorluxor/PartEdit af50018, tiny-sdxl, float64), stored
#: by the parity harness with the command the file names (benchmarks/parity/partedit.py)
OFFICIAL_LATENTS = Path(__file__).with_name("reference") / "partedit_official_latents.json"


@pytest.mark.parametrize("paths", [2, 3])
def test_both_paths_equal_the_released_pipelines_stored_latents(paths):
    """Ours (two paths, and the official three-path batch as `reference.py` runs it) against
    the latents the released pipeline produced on the same cases: a drift of either shows here
    without the official code."""
    import json

    from partedit_bench.methods.partedit import PartEdit

    stored = json.loads(OFFICIAL_LATENTS.read_text())
    backbone = load_backbone("tiny-sdxl", dtype="float64")
    samples = {s.id: s for s in load_suite("partworld").samples}
    for case, official in stored["latents"].items():
        sample_id, steps, t_e, cross = case.split(":")
        sample = samples[sample_id]
        options = PartEditOptions(steps=int(steps), t_e=int(t_e), cross_replace=float(cross))
        method = PartEdit(options)
        method.preflight(backbone, [sample])
        image = load_image(sample.original_image)
        run = run_partedit(
            backbone, sample, image, sample.seed, options, method.tokens, True, paths=paths
        )
        shape = official["shape"]
        for row, name in ((0, "source"), (1, "edit")):
            expected = torch.tensor(official[name], dtype=torch.float64).reshape(shape)
            torch.testing.assert_close(run.latents[row], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_t_e_zero_gives_the_unblended_edit_path(backbones, name):
    backbone, sample = backbones[name], sample_of("humanoid-torso")
    tokens = random_tokens(backbone, ["humanoid-torso"])
    options = dataclasses.replace(FAST, t_e=0, p2p=False)
    run = run_partedit(
        backbone, sample, load_image(sample.original_image), 0, options, tokens, synthetic=True
    )
    edit_alone = plain_generation(backbone, plain_prompt(sample), sample.seed, FAST.steps, 7.5)
    source_alone = plain_generation(backbone, sample.prompt_original, sample.seed, FAST.steps, 7.5)
    torch.testing.assert_close(run.latents[1:2], edit_alone, rtol=0, atol=1e-9)
    torch.testing.assert_close(run.latents[0:1], source_alone, rtol=0, atol=1e-9)
    assert run.result.extras["p2p_replacement"] == "off"


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
@pytest.mark.parametrize("synthetic", [True, False])
def test_an_all_zero_given_mask_gives_the_source(backbones, name, synthetic, monkeypatch):
    """mask_source=gt (any given mask) with a GT mask of zeros: PartEdit blends nothing in, from
    the first step, and the edit path is the source path exactly (no token is used)."""
    from partedit_bench.methods.partedit import sampling

    backbone, sample = backbones[name], sample_of("car-hood")
    # on SDXL the edit prompt's pooled embedding reaches every ResNet (not through attention,
    # so no blend can take it back): the edit path gets the source's, encoded first
    encode, pooled = sampling.encode_prompt, []

    def sharing_the_pooled_embedding(backbone, prompt):
        c, u, p, pu = encode(backbone, prompt)
        pooled.append((p, pu))
        return (c, u, *pooled[0])

    monkeypatch.setattr(sampling, "encode_prompt", sharing_the_pooled_embedding)
    options = dataclasses.replace(FAST, guidance=3.5, source_guidance=3.5, mask_source="gt")
    image = load_image(sample.original_image)
    zeros = np.zeros((image.size[1], image.size[0]), bool)
    run = run_partedit(backbone, sample, image, 0, options, {}, synthetic, given_mask=zeros)
    torch.testing.assert_close(run.latents[1], run.latents[0], rtol=0, atol=1e-10)
    assert np.array_equal(np.asarray(run.result.image), np.asarray(run.source))
    assert run.blends == [len(backbone.unet.attn_processors)] * FAST.steps  # every call, step 0 on
    assert run.result.extras["mask_source"] == "gt"
    assert not np.asarray(run.result.predicted_mask).any()


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sd-v", "tiny-sdxl"])
def test_edit_friendly_inversion_reconstructs_its_input(name):
    backbone = load_backbone(name, dtype="float64")
    image = load_image(sample_of().original_image)
    x0 = backbone.encode_images([image])
    context, added = backbone.encode_prompts(["a photo", ""])
    prediction = backbone.components["scheduler"].config.prediction_type

    def predict(x, t):
        out = backbone.unet(
            torch.cat([x, x]),
            t,
            encoder_hidden_states=context[[1, 0]],
            added_cond_kwargs=None if added is None else {k: v[[1, 0]] for k, v in added.items()},
        ).sample
        return out[0:1] + 3.5 * (out[1:2] - out[0:1])

    inv = inversion.invert(
        predict,
        x0,
        backbone.components["scheduler"],
        6,
        torch.Generator().manual_seed(0),
        prediction,
    )
    x = inv.xs[0]  # regenerate from x_T with the source prompt and the stored noise maps
    for i, t in enumerate(inv.timesteps):
        eps, x0_hat = inversion.to_eps_x0(predict(x.to(x0.dtype), t), x, inv.alphas[i], prediction)
        mean, sigma = inversion.ddpm_mean_sigma(eps, x0_hat, inv.alphas[i], inv.alphas[i + 1])
        x = mean + sigma * inv.zs[i]
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-8)


def test_v_prediction_backbone_edits_and_reconstructs_its_input():
    backbone = load_backbone("tiny-sd-v", dtype="float64")
    sample = sample_of()
    image = load_image(sample.original_image)
    exact = dataclasses.replace(FAST, zero_last_noise=False)
    run = run_partedit(
        backbone, sample, image, 0, exact, random_tokens(backbone, ["animal-head"]), synthetic=False
    )
    torch.testing.assert_close(run.latents[0:1], backbone.encode_images([image]), rtol=0, atol=1e-8)
    assert run.result.image.size == (64, 64) and run.result.extras["mode"] == "real"


def test_thresholds_on_hand_made_maps():
    m = torch.tensor([[0.0, 0.05, 0.1, 0.2], [0.3, 0.5, 0.8, 1.0]])
    k = core.otsu(m)
    adaptive, k_used = core.threshold_mask(m, "adaptive", 1.5)
    assert k_used == k
    expected = torch.where(m < k / 2, 0.0, torch.where(m >= 1.5 * k, 1.0, m))
    torch.testing.assert_close(adaptive, expected)
    values = sorted(m.flatten().tolist())

    def between(split):  # between-class variance of the split below / from `split`
        low, high = values[:split], values[split:]
        w0, w1 = len(low) / len(values), len(high) / len(values)
        return w0 * w1 * (sum(low) / len(low) - sum(high) / len(high)) ** 2

    best = max(range(1, len(values)), key=between)  # brute-force Otsu on the 8 values
    # 256-bin histogram Otsu (scikit-image, the official port) returns the center of the bin
    # holding the lower class's largest value
    assert abs(k - values[best - 1]) <= (values[-1] - values[0]) / 256
    assert core.threshold_mask(m, "binary")[0].tolist() == [[0, 0, 0, 0], [0, 1, 1, 1]]
    assert core.threshold_mask(m, "otsu")[0].tolist() == (m >= k).float().tolist()
    assert torch.equal(core.threshold_mask(m, "soft")[0], m)
    two = torch.tensor([[0.0, 0.5], [0.55, 1.0]])
    k2 = core.otsu(two)
    out = core.threshold_mask(two, "adaptive", 1.0)[0]
    assert out.tolist() == torch.where(two < k2 / 2, 0.0, torch.where(two >= k2, 1.0, two)).tolist()
    # omega < 0.5: the values zeroed below k/2 stay zero (the released order of assignment)
    low = core.threshold_mask(m, "adaptive", 0.25)[0]
    assert low.tolist() == torch.where(m < k / 2, 0.0, 1.0).tolist()


def test_otsu_equals_scikit_image_on_random_maps():
    from skimage.filters import threshold_otsu

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        m = torch.rand(64, 64, generator=generator) ** 3
        bin_width = float(m.max() - m.min()) / 256
        # the same algorithm; float32 histogram edges may place a value in the next bin
        assert abs(core.otsu(m) - threshold_otsu(m.numpy(), nbins=256)) <= bin_width + 1e-7


def test_two_parts_are_normalized_jointly():
    strong = [torch.tensor([[0.0, 4.0], [0.0, 0.0]]), torch.tensor([[0.0, 2.0], [0.0, 0.0]])]
    weak = [torch.tensor([[1.0, 0.5], [0.5, 0.5]]), torch.tensor([[1.0, 0.5], [0.5, 0.5]])]
    joint = core.aggregate({"a": strong, "b": weak}, (2, 2))
    # per layer jointly (the joint minimum 0, not b's own 0.5): layer 1 max 4, layer 2 max 2
    # -> a = mean(1, 1) = 1, b = mean(.25, .5) = .375 and mean(.125, .25) = .1875
    assert joint["a"][0, 1] == pytest.approx(1.0)
    assert joint["b"][0, 0] == pytest.approx(0.375)
    assert joint["b"][0, 1] == pytest.approx(0.1875)
    alone = core.aggregate({"b": weak}, (2, 2))
    assert alone["b"][0, 0] == pytest.approx(1.0, abs=1e-5)  # separately, each would reach 1
    assert alone["b"][0, 1] == pytest.approx(0.0, abs=1e-5)  # and its own minimum 0


def test_padding_strategies():
    e = torch.arange(8.0).reshape(2, 4)
    context = torch.arange(77 * 4.0).reshape(77, 4)
    assert torch.equal(core.pad_token(e, "bg", context)[2:], e[0].expand(75, 4))
    assert torch.equal(core.pad_token(e, "sot", context)[5], context[0])
    assert torch.equal(core.pad_token(e, "eot", context)[5], context[-1])
    assert core.pad_token(e, "zero", context)[2:].abs().sum() == 0
    assert torch.equal(core.pad_token(e, "context", context)[2:], context[2:])
    assert torch.equal(core.pad_token(e, "bg", context)[:2], e)
    for strategy in ("bg", "sot", "eot", "zero", "context"):  # always `length` tokens
        assert core.pad_token(e, strategy, context).shape == (77, 4)
        assert core.pad_token(e, strategy, context[:20], length=20).shape == (20, 4)
        # in the context's dtype (the text encoder's), whatever the token was stored in
        assert core.pad_token(e, strategy, context.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="unknown padding strategy 'mean'"):
        core.pad_token(e, "mean", context)


def test_multi_part_edit_blends_both_parts(backbones):
    backbone = backbones["tiny-sd"]
    sample = load_suite("partworld-multi").samples[0]
    assert parts_of(sample) == ["human-hair", "humanoid-torso"]
    assert "<" not in plain_prompt(sample)
    tokens = random_tokens(backbone, parts_of(sample))
    image = load_image(sample.original_image)
    assert run_partedit(backbone, sample, image, 0, FAST, tokens, False).maps == []  # on request
    run = run_partedit(backbone, sample, image, 0, FAST, tokens, False, keep_maps=True)
    assert set(run.maps[0]) == {"human-hair", "humanoid-torso"}
    assert run.maps[0]["human-hair"].shape == (64, 64)  # tiny-sd: the pixel resolution
    assert max(float(m.max()) for m in run.maps[0].values()) == pytest.approx(1.0, abs=1e-4)
    assert run.result.predicted_mask is not None


def test_run_end_to_end_with_the_shipped_tokens(tmp_path, capsys):
    import pandas as pd

    for backbone in ("tiny-sd", "tiny-sdxl"):
        for suite, limit in (
            ("partworld", "3"),
            ("partedit-real-mini", "2"),
            ("partworld-multi", "2"),
        ):
            out = tmp_path / f"{backbone}-{suite}"
            assert (
                main(
                    [
                        "run",
                        "--methods",
                        "partedit",
                        "--backbone",
                        backbone,
                        "--suite",
                        suite,
                        "--limit",
                        limit,
                        "--set",
                        "partedit.steps=3",
                        "--output",
                        str(out),
                    ]
                )
                == 0
            )
            table = pd.read_csv(out / "report" / "table.csv")
            row = table[(table.part == "all") & (table.metric == "mask_iou")]
            assert (row.n == int(limit)).all(), (backbone, suite)
    capsys.readouterr()
    missing = main(
        [
            "run",
            "--methods",
            "partedit",
            "--backbone",
            "tiny-sd",
            "--set",
            f"partedit.tokens={tmp_path}",
            "--limit",
            "2",
            "--output",
            str(tmp_path / "none"),
        ]
    )
    err = capsys.readouterr().err
    assert missing == 2 and "partedit needs tokens for (tiny-sd:" in err and "train-token" in err
    assert not (tmp_path / "none").exists()


def test_ledits_inversion_option_runs_and_restores_the_processors():
    backbone = load_backbone("tiny-sd")
    before = [type(p).__name__ for p in backbone.unet.attn_processors.values()]
    sample = sample_of()
    options = dataclasses.replace(FAST, inversion="ledits")
    run = run_partedit(
        backbone,
        sample,
        load_image(sample.original_image),
        0,
        options,
        random_tokens(backbone, ["animal-head"]),
        synthetic=False,
    )
    assert run.result.extras["inversion"] == "ledits" and len(run.otsu) == FAST.steps
    assert [type(p).__name__ for p in backbone.unet.attn_processors.values()] == before


def test_localization_layer_choices(backbones):
    from partedit_bench.engine.attention import cross_attention_layers
    from partedit_bench.errors import UserError
    from partedit_bench.methods.partedit.sampling import localization_layers

    backbone = backbones["tiny-sdxl"]
    tokens = list(random_tokens(backbone, ["car-hood"]).values())
    assert localization_layers(backbone.unet, "token", tokens) == set(tokens[0].layers)
    assert localization_layers(backbone.unet, "decoder", tokens) == set(
        cross_attention_layers(backbone.unet, "up")
    )
    two = cross_attention_layers(backbone.unet)[:2]
    assert localization_layers(backbone.unet, ",".join(two), tokens) == set(two)
    with pytest.raises(UserError, match="not a cross-attention layer"):
        localization_layers(backbone.unet, "up_blocks.9.attn2", tokens)
    sample = sample_of("car-hood")
    options = dataclasses.replace(FAST, layers="decoder")
    run = run_partedit(
        backbone,
        sample,
        load_image(sample.original_image),
        0,
        options,
        random_tokens(backbone, ["car-hood"]),
        synthetic=False,
    )
    assert len(run.otsu) == FAST.steps


def test_official_40_on_the_real_sdxl_unet_architecture():
    from diffusers import UNet2DConditionModel

    from benchmarks.partedit_speed import ARCHS
    from partedit_bench.engine.attention import cross_attention_layers
    from partedit_bench.methods.partedit.sampling import official_40

    with torch.device("meta"):  # the real SDXL config, no weights allocated
        unet = UNet2DConditionModel(**ARCHS["sdxl"])
    layers = cross_attention_layers(unet)
    assert len(layers) == 70
    chosen = official_40(layers)
    assert len(chosen) == len(set(chosen)) == 40
    # execution order: down_blocks.1 (4), down_blocks.2 (20), mid (10), up_blocks.0 (30),
    # up_blocks.1 (6)
    assert {n for n in chosen if n.startswith("mid_block")} == set(layers[24:34])
    assert all(n.startswith("mid_block") for n in layers[24:34])
    assert [n for n in chosen if n.startswith("up_blocks.0.")] == layers[34:60]
    assert [n for n in chosen if n.startswith("down_blocks")] == layers[:4]
    assert all(n.startswith("down_blocks.1.") for n in layers[:4])
    assert not any(n.startswith(("up_blocks.1", "down_blocks.2")) for n in chosen)


def test_official_40_is_refused_on_other_unets(backbones):
    from partedit_bench.errors import UserError
    from partedit_bench.methods.partedit.sampling import localization_layers

    with pytest.raises(UserError, match="70 cross-attention layers"):
        localization_layers(backbones["tiny-sdxl"].unet, "official-40", [])


# ---------------------------------------------------------------------------------------
# The released pipeline's mechanics (partedit_bench/methods/partedit/README.md, fidelity
# table), held without its code


def test_mask_is_thresholded_at_the_configured_resolution():
    # a 4 x 4 map whose Otsu threshold moves when bilinear upsampling fills in the histogram
    m = torch.tensor(
        [[0.0, 0.1, 0.9, 1.0], [0.0, 0.2, 0.8, 0.3], [0.1, 0.0, 0.4, 0.2], [0.0, 0.0, 0.1, 0.0]],
        dtype=torch.float64,
    )
    ks, masks = {}, {}
    for size in (4, 1024):
        state = core.EditState(latent_size=(4, 4), mask_size=(size, size))
        state.begin_step(0)
        state.maps = {"part": [m, m.flip(0)]}
        state.finish_step()
        masks[size], ks[size] = state.mask, state.otsu_k[0]
        expected = core.aggregate({"part": [m, m.flip(0)]}, (size, size))["part"]
        assert ks[size] == core.otsu(expected)
        assert state.mask.shape == (size, size) and state.mask.dtype == torch.float64
    assert abs(ks[4] - ks[1024]) > 0.01
    # the blend mask of a layer is the thresholded mask resized to that layer
    state.force_mask = None
    state.t_e, state.total_calls = 5, 10
    state.begin_step(1)
    layer = state.layer_mask(16)
    resized = F.interpolate(masks[1024][None, None], size=(4, 4), mode="bilinear")
    torch.testing.assert_close(layer, resized.reshape(-1, 1), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("timing", "t_e", "blended_steps"),
    [("official", 5, 5), ("lagged", 5, 4), ("official", 3, 3), ("lagged", 3, 2)],
)
def test_mask_timing_and_t_e(backbones, timing, t_e, blended_steps):
    backbone, sample = backbones["tiny-sdxl"], sample_of()
    tokens = random_tokens(backbone, ["animal-head"])
    options = PartEditOptions(steps=5, t_e=t_e, mask_timing=timing)
    image = load_image(sample.original_image)
    run = run_partedit(backbone, sample, image, 0, options, tokens, synthetic=True)
    calls = len(backbone.unet.attn_processors)
    if timing == "official":  # the last call of a step blends with that step's mask
        last = [1 if 0 < i + 1 < t_e else 0 for i in range(5)]
        others = [(calls - 1) if 0 < i < t_e else 0 for i in range(5)]
        assert run.blends == [a + b for a, b in zip(last, others, strict=True)]
        assert run.blends[0] == 1
    else:  # every call blends with the previous step's mask, while 0 < step < t_e
        assert run.blends == [calls if 0 < i < t_e else 0 for i in range(5)]
        assert run.blends[0] == 0
    assert sum(1 for b in run.blends if b) == blended_steps


def test_prompt_to_prompt_window_lengths():
    tokenizer = load_backbone("tiny-sd").components["tokenizer"]
    source = "a photo of a gray horse with a gray head on a beach"
    edit = "a photo of a gray horse with a red head on a beach"
    for steps, window in ((6, 2), (8, 3), (50, 20)):  # floor(0.4 * (T + 1))
        swap = words.word_swap(tokenizer, source, edit, "red", 0.4, steps)
        assert swap.window_steps == window
        red = 9  # the token of "red" (after the start token)
        assert [float(swap.alpha(i)[red]) for i in range(steps)] == [1.0] * window + [0.0] * (
            steps - window
        )
        assert torch.equal(swap.mapper, torch.eye(77, dtype=swap.mapper.dtype))


def test_multi_word_edit_replaces_the_other_changed_words_at_every_step():
    tokenizer = load_backbone("tiny-sd").components["tokenizer"]
    sample = sample_of()  # pw0-00000: "an orange head" -> "a purple head", edit "purple"
    source, edit = sample.prompt_original, plain_prompt(sample)
    changed = [
        i for i, (a, b) in enumerate(zip(source.split(), edit.split(), strict=True)) if a != b
    ]
    assert [edit.split()[i] for i in changed] == ["a", "purple"] and sample.edit == "purple"
    article, color = changed[0] + 1, changed[1] + 1  # one token per word here
    swap = words.word_swap(tokenizer, source, edit, sample.edit, 0.4, 5)
    late = swap.alpha(4)
    assert late[article] == 1 and late[color] == 0 and late[1] == 1 and late[60] == 1
    every = words.word_swap(tokenizer, source, edit, None, 0.4, 5)  # p2p_words=changed
    assert every.alpha(4)[article] == 0 and every.alpha(4)[color] == 0
    with pytest.raises(NotWordAligned, match="word count"):
        words.word_swap(tokenizer, "a photo of a cat", "a photo of a red cat", None, 0.4, 5)


def test_word_swap_with_a_changed_token_count_shares_the_maps():
    tokenizer = load_backbone("tiny-sd").components["tokenizer"]
    counts = {
        w: len(tokenizer(w, add_special_tokens=False).input_ids) for w in ("cat", "zebrafish")
    }
    assert counts == {"cat": 1, "zebrafish": 2}
    swap = words.word_swap(tokenizer, "a cat on grass", "a zebrafish on grass", None, 0.4, 5)
    m = swap.mapper
    assert m[2, 2] == m[2, 3] == 0.5  # "cat" -> both tokens of "zebrafish"
    assert m[1, 1] == 1 and m[4, 4] == 1 and m[3, 4] == 0  # after it: position onto itself


def test_prompt_to_prompt_edits_only_the_conditional_half():
    swap = core.WordSwap(torch.eye(77), torch.zeros(77), 0)
    state = core.EditState(swap=swap)
    state.begin_step(0)
    heads, tokens = 2, 5
    probs = torch.rand(4 * heads, tokens, 77, generator=torch.Generator().manual_seed(0))
    out = state.swap_cross(probs, 4, heads).view(4, heads, tokens, 77)
    rows = probs.view(4, heads, tokens, 77)
    assert torch.equal(out[1], rows[1])  # unconditional edit row untouched
    assert torch.equal(out[3], rows[2])  # conditional edit row = conditional source row
    assert torch.equal(out[[0, 2]], rows[[0, 2]])


def test_word_count_mismatch_is_recorded_and_counted_in_the_report(backbones, tmp_path):
    import json

    backbone = backbones["tiny-sdxl"]
    sample = next(
        s
        for s in load_suite("partworld").samples
        if len(s.prompt_original.split()) != len(plain_prompt(s).split())
    )
    tokens = random_tokens(backbone, parts_of(sample))
    run = run_partedit(
        backbone, sample, load_image(sample.original_image), 0, FAST, tokens, synthetic=True
    )
    assert run.result.extras["p2p_replacement"].startswith("skipped: prompts differ in word count")
    assert run.result.extras["notes"] == [
        "prompt-to-prompt layer skipped: prompts differ in word count"
    ]
    out = tmp_path / "run"
    args = ["--limit", "3", "--set", "partedit.steps=2", "--output", str(out)]
    assert main(["run", "--methods", "partedit", "--backbone", "tiny-sdxl", *args]) == 0
    suite = load_suite("partworld").samples[:3]
    skipped = sum(len(s.prompt_original.split()) != len(plain_prompt(s).split()) for s in suite)
    assert skipped >= 1
    notes = json.loads((out / "report" / "manifest.json").read_text())["notes"]
    assert (
        f"partedit[steps=2]: {skipped} job(s): prompt-to-prompt layer skipped: prompts differ in "
        "word count" in notes
    ), notes


def test_self_attention_replacement_window_and_layer_limit():
    # self_replace=0.4 of 5 steps: steps 0 and 1, layers with at most ceil(W / 32)^2 keys
    backbone = load_backbone("tiny-sd")
    state = core.EditState(self_replace_steps=int(5 * 0.4), self_replace_tokens=16)
    state.begin_step(1)
    assert state.replace_self(16) and not state.replace_self(64)
    state.begin_step(2)
    assert not state.replace_self(16)
    probs = torch.rand(8, 16, 16, generator=torch.Generator().manual_seed(1))
    out = state.swap_self(probs, 4, 2).view(4, 2, 16, 16)
    rows = probs.view(4, 2, 16, 16)
    assert torch.equal(out[3], rows[2]) and torch.equal(out[[0, 1, 2]], rows[[0, 1, 2]])
    # on the 64 px tiny backbones no self-attention layer is that small: an unchanged edit
    sample = sample_of("car-hood")
    tokens = random_tokens(backbone, ["car-hood"])
    image = load_image(sample.original_image)
    plain = run_partedit(backbone, sample, image, 0, FAST, tokens, synthetic=True)
    replaced = run_partedit(
        backbone,
        sample,
        image,
        0,
        dataclasses.replace(FAST, self_replace=0.4),
        tokens,
        synthetic=True,
    )
    assert torch.equal(plain.latents, replaced.latents)


def test_self_attention_replacement_where_it_is_active_equals_a_hand_computation():
    """On a tiny SDXL with an 8x VAE (the real SDXL's factor: at 64 px the UNet's last level is
    2 x 2 = ceil(64 / 32)^2 keys, what the released code's limit admits), self_replace=1.0
    makes the conditional edit row attend with the source's maps: its attention output equals
    to_out(softmax(q_src k_src^T / sqrt(d)) v_edit), computed here from the layer's weights;
    without the replacement it would be the edit row's own attention (checked to differ)."""
    from diffusers import AutoencoderKL

    from partedit_bench.engine.attention import attention_layers
    from partedit_bench.engine.backbones import Backbone
    from partedit_bench.engine.tiny import build_tiny_sdxl

    components = build_tiny_sdxl()
    torch.manual_seed(1)
    components["vae"] = AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), norm_num_groups=32, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()  # fmt: skip
    components = {k: v.double() if hasattr(v, "double") else v for k, v in components.items()}
    backbone = Backbone("tiny-sdxl-vae8", "sdxl", components, 64, "in-process", True)
    assert backbone.latent_resolution == 8
    unet = backbone.unet
    small = [n for n in attention_layers(unet, "attn1") if n.startswith("up_blocks.0")]
    seen: dict[str, tuple] = {}

    def keep(name):
        def hook(module, args, kwargs, output):
            seen.setdefault(name, (kwargs.get("hidden_states", args[0] if args else None), output))

        return hook

    handles = [
        unet.get_submodule(n).register_forward_hook(keep(n), with_kwargs=True) for n in small
    ]
    sample = sample_of("car-hood")
    image = load_image(sample.original_image)
    ones = np.ones((image.size[1], image.size[0]), bool)  # blending keeps the edit's output
    options = dataclasses.replace(FAST, self_replace=1.0, mask_source="gt")
    try:
        run_partedit(backbone, sample, image, 0, options, {}, synthetic=True, given_mask=ones)
    finally:
        for handle in handles:
            handle.remove()
    assert small and set(seen) == set(small)
    for name in small:
        attn, (hidden, output) = unet.get_submodule(name), seen[name]
        assert hidden.shape[1] == 4  # 2 x 2 keys: inside the limit
        heads = attn.heads

        def split(x, heads=heads):  # (N, C) -> (heads, N, d)
            return x.view(x.shape[0], heads, -1).transpose(0, 1)

        src, edit = hidden[2], hidden[3]  # rows: uncond src, uncond edit, cond src, cond edit
        q, k = split(F.linear(src, attn.to_q.weight)), split(F.linear(src, attn.to_k.weight))
        d = q.shape[-1]
        maps = torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1)
        v_edit = split(F.linear(edit, attn.to_v.weight))
        merged = (maps @ v_edit).transpose(0, 1).reshape(edit.shape[0], -1)
        expected = F.linear(merged, attn.to_out[0].weight, attn.to_out[0].bias)
        torch.testing.assert_close(output[3], expected, rtol=0, atol=1e-12)
        q_edit, k_edit = (
            split(F.linear(edit, attn.to_q.weight)),
            split(F.linear(edit, attn.to_k.weight)),
        )
        own = torch.softmax(q_edit @ k_edit.transpose(1, 2) / d**0.5, dim=-1) @ v_edit
        own = F.linear(own.transpose(0, 1).reshape(edit.shape[0], -1), attn.to_out[0].weight,
                       attn.to_out[0].bias)  # fmt: skip
        assert (own - expected).abs().max() > 1e-6  # the replacement changed something


def test_the_attention_map_strip_shows_what_the_method_used(tmp_path, capsys):
    """`partedit-bench maps` recomputes a job with its maps (the same edit as stored), and the
    strip's adaptive panels are the masks the method blended with: their mean over the steps,
    brought to the image size, is the job's reported blend mask."""
    from partedit_bench.methods.partedit.figures import COLUMNS, job_maps, strip_panels

    run = tmp_path / "run"
    args = ["run", "--methods", "partedit", "--backbone", "tiny-sd", "--limit", "1"]
    assert main([*args, "--set", "partedit.steps=3", "--output", str(run)]) == 0
    (record_path,) = [p for p in run.glob("partedit*/*/*__s0.json")]
    job = "/".join(record_path.with_suffix("").parts[-3:])
    out = tmp_path / "strip.png"
    capsys.readouterr()
    assert main(["maps", str(run), job, "--output", str(out)]) == 0
    assert "equals the stored one" in capsys.readouterr().err
    assert out.stat().st_size > 0
    recomputed, options, record = job_maps(run, job)
    steps = strip_panels(recomputed.maps, options.omega)
    assert len(steps) == 3 and all(set(COLUMNS) <= set(s) for s in steps)
    mean = torch.as_tensor(np.mean([s["adaptive T(M)"] for s in steps], axis=0))
    sample = next(s for s in load_suite("partworld").samples if s.id == record.sample_id)
    image = load_image(sample.original_image)
    expected = recomputed.result.predicted_mask
    np.testing.assert_allclose(core.numpy_mask(mean, image.size), expected, atol=1e-6)
    for s in steps:  # the other panels are the named binarizations of the same map
        m = s["normalized map"]
        assert np.array_equal(s["binary (0.5)"], (m >= 0.5).astype(np.float32))
        assert np.array_equal(s["Otsu"], (m >= s["k"]).astype(np.float32))
    assert main(["maps", str(run), job, "--output", str(out)]) == 2  # exists: --overwrite
