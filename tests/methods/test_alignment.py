"""The word alignment against prompt-to-prompt's own (`seq_aligner.py`): the mappers and alphas
its functions produced on the real CLIP tokenizer, stored by the parity harness with the command
the file names (benchmarks/parity/alignment.py); ours recomputed here must equal them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from partedit_bench.engine.alignment import refinement_mapper, word_swap_mapper
from partedit_bench.engine.clip_bpe import clip_tokenizer

STORED = json.loads((Path(__file__).with_name("reference") / "alignment_official.json").read_text())


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


@pytest.mark.parametrize("case", sorted(STORED["cases"]))
def test_ours_equals_the_reference_alignment(case, tokenizer):
    stored = STORED["cases"][case]
    source, target = stored["source"], stored["target"]
    if case.startswith("replace"):
        ours = word_swap_mapper(tokenizer, source, target)[0].double()
        expected = torch.zeros_like(ours)
        for i, j, value in stored["mapper"]:
            expected[int(i), int(j)] = value
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-7)  # (theirs: float32 1/n)
    else:
        mapper, alphas = refinement_mapper(tokenizer, source, target)
        assert mapper.tolist() == stored["mapper"]
        assert alphas.tolist() == stored["alphas"]


def lcs_length(x: list[int], y: list[int]) -> int:
    """Longest common subsequence, the textbook recurrence (an independent reference: with gap
    0 and mismatch -1 the global alignment matches exactly an LCS's number of pairs)."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, a in enumerate(x, 1):
        for j, b in enumerate(y, 1):
            table[i][j] = (
                table[i - 1][j - 1] + 1 if a == b else max(table[i - 1][j], table[i][j - 1])
            )
    return table[-1][-1]


@pytest.mark.parametrize(
    "x, y, expected",
    [
        ([5], [7, 5], [-1, 0]),  # y's extra first element: the trace runs along the top border
        ([7, 5], [5], [1]),  # x's extra first element: along the left border
        ([5], [7, 8], [-1, -1]),
        ([1, 2, 3], [1, 9, 3], [0, -1, 2]),
        ([1, 2, 2, 3], [1, 2, 3], [0, 1, 3]),  # a tie: a gap before the diagonal, the first 2
        ([], [4, 4], [-1, -1]),
    ],
)
def test_global_alignment_by_hand(x, y, expected):
    from partedit_bench.engine.alignment import _global_alignment

    assert _global_alignment(x, y) == expected


def test_global_alignment_pairs_an_lcs_of_equal_elements_in_order():
    from partedit_bench.engine.alignment import _global_alignment

    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        n, m = (int(v) for v in torch.randint(0, 7, (2,), generator=generator))
        x = torch.randint(0, 4, (n,), generator=generator).tolist()
        y = torch.randint(0, 4, (m,), generator=generator).tolist()
        partner = _global_alignment(x, y)
        assert len(partner) == m
        pairs = [(p, j) for j, p in enumerate(partner) if p >= 0]
        assert all(x[p] == y[j] for p, j in pairs)
        assert [p for p, _ in pairs] == sorted({p for p, _ in pairs})  # strictly increasing
        assert len(pairs) == lcs_length(x, y)


def test_prompts_longer_than_the_mapper_are_truncated_as_the_text_encoder_reads_them(tokenizer):
    words = [f"w{i}" for i in range(60)]  # "w12": 2 tokens each, 120 tokens in all
    long_source = " ".join(["a", "red", *words])
    long_target = " ".join(["a", "big", "red", *words])
    for length in (77, 20):
        mapper, alphas = refinement_mapper(tokenizer, long_source, long_target, length=length)
        assert mapper.shape == alphas.shape == (length,)
        assert int(mapper.max()) < length
        # "big" is new; "a" and "red" keep their partners; the rest follows shifted by one
        assert mapper[:4].tolist() == [0, 1, -1, 2] and alphas[:4].tolist() == [1, 1, 0, 1]
    # a word swap whose changed word straddles the last position keeps only its first token
    head = " ".join(["cat"] * 75)  # one token each: positions 1 .. 75
    source, target = f"{head} w1 tail", f"{head} w2 tail"  # "w", "1" / "w", "2" at 76, 77
    for length, changed_at in ((77, [76]), (20, [])):
        mapper, changed, positions = word_swap_mapper(tokenizer, source, target, length=length)
        assert mapper.shape == (length, length) and changed == [75]
        assert positions[75] == changed_at
        assert torch.equal(mapper, torch.eye(length, dtype=mapper.dtype))  # w1 -> w2 in place


def test_word_swap_splits_on_single_spaces_as_the_reference(tokenizer):
    single = word_swap_mapper(tokenizer, "a photo of a cat", "a photo of a dog")
    double = word_swap_mapper(tokenizer, "a  photo of a cat", "a  photo of a dog")
    assert single[1] == [4] and double[1] == [5]  # the empty word between the two spaces
    assert torch.equal(single[0], double[0])  # it has no tokens: the same mapper
    with pytest.raises(ValueError, match=r"differ in word count \(5 vs 6\)"):
        word_swap_mapper(tokenizer, "a photo of a cat", "a photo of a big cat")


def test_positions_of_words_are_the_tokens_of_whole_words(tokenizer):
    from partedit_bench.engine.alignment import positions_of_words

    prompt = "a chartreuse head on a headboard"
    counts = [len(tokenizer(w, add_special_tokens=False).input_ids) for w in prompt.split(" ")]
    start = 1 + counts[0]
    chartreuse = list(range(start, start + counts[1]))
    head = [start + counts[1]]
    assert counts[1] > 1  # a word of several tokens
    assert positions_of_words(tokenizer, prompt, ["head"]) == head  # not "headboard"
    assert positions_of_words(tokenizer, prompt, ["chartreuse", "head"]) == chartreuse + head
    assert positions_of_words(tokenizer, prompt, ["tail"]) == []


def test_words_are_separated_by_single_spaces_only(tokenizer):
    """prompt-to-prompt's `get_word_inds` splits on " ": a tab joins two words into one, which
    then matches neither."""
    from partedit_bench.engine.alignment import positions_of_words

    assert positions_of_words(tokenizer, "a red head", ["head"]) == [3]
    assert positions_of_words(tokenizer, "a red\thead", ["head"]) == []
    assert positions_of_words(tokenizer, "a  red head", ["head"]) == [3]  # "" has no tokens


def test_a_changed_word_across_the_mappers_end_keeps_its_first_token(tokenizer):
    head = " ".join(["cat"] * 18)  # positions 1 .. 18
    mapper, changed, positions = word_swap_mapper(
        tokenizer, f"{head} w1 x", f"{head} w22 x", length=20
    )  # "w", "1" at 19, 20 / "w", "2", "2" at 19, 20, 21
    assert changed == [18] and positions[18] == [19]
    assert torch.equal(mapper, torch.eye(20, dtype=mapper.dtype))


def test_the_mappers_are_cpu_bookkeeping_whatever_the_default_device(tokenizer):
    with torch.device("meta"):  # a default device that holds no values
        mapper, alphas = refinement_mapper(tokenizer, "a red head", "a big red head")
        swap = word_swap_mapper(tokenizer, "a red head", "a blue head")[0]
    assert mapper.device.type == alphas.device.type == swap.device.type == "cpu"
    assert mapper[:5].tolist() == [0, 1, -1, 2, 3]
