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
