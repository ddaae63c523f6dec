"""Parity of the word alignment (`engine/alignment.py`: the word-swap mapper PartEdit and p2p's
Replace use, the refinement mapper of p2p's Refine) with prompt-to-prompt's `seq_aligner.py`
(`get_replacement_mapper_`, `get_refinement_mapper`), as inbarhub/DDPM_inversion carries it
(`prompt_to_prompt/seq_aligner.py`, "originally taken from google/prompt-to-prompt"), on the
real CLIP tokenizer, for prompt pairs of every kind: one word swapped, words of other token
counts, several words, insertions, deletions. No glue.

`--store FILE` writes the official mappers (their non-zero entries) and alphas, which
`tests/methods/test_alignment.py` compares ours with, without the official code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmarks.parity.common import (
    CHECKOUTS,
    Row,
    load_file,
    main_with_store,
    max_abs,
)

METHOD = "alignment"
CHECKOUT = CHECKOUTS[METHOD]  # the DDPM_inversion checkout (it carries seq_aligner.py)
#: (source, target) pairs; Replace needs equal word counts, Refine takes any
REPLACE = [
    ("a photo of a gray horse with a red head", "a photo of a gray horse with a blue head"),
    ("a photo of a gray horse with a red head", "a photo of a gray horse with a chartreuse head"),
    ("a photo of an orange cow at night", "a photo of a purple cow at night"),
    ("a cat with a white head on a beach", "a dog with a golden head on a beach"),
    ("a person wearing a pink shirt", "a person wearing a turquoise shirt"),
    ("a red car with a blue hood in a park", "a chartreuse car with a turquoise hood in a park"),
    ("a chartreuse horse with a red head", "a gray horse with a turquoise head"),
    ("a cat with a white head", "a cat with a magnificent head"),
]
REFINE = [
    ("a cat on grass", "a big cat on grass"),
    ("a photo of a gray horse on a beach", "a photo of a gray horse with a red head on a beach"),
    ("a photo of a car", "a photo of a red sports car in a desert"),
    ("a red car in a park", "a car in a park"),
    ("a person with long hair", "a smiling person with long blonde hair"),
    ("a chartreuse car", "a car"),
    ("a photo of a cat", "a photo of a cat a cat"),
    ("a tiny red cat on a big green mat", "a cat on a mat"),
]
CASES = [f"replace:{i}" for i in range(len(REPLACE))] + [f"refine:{i}" for i in range(len(REFINE))]
OFFICIAL: dict[str, Any] = {}


def sparse(matrix: torch.Tensor) -> list[list[float]]:
    """The non-zero entries of a mapper as [i, j, value] (a 77 x 77 mapper is mostly zeros)."""
    index = matrix.nonzero().tolist()
    return [[i, j, float(matrix[i, j])] for i, j in index]


def run_case(checkout: Path, case: str) -> Row:
    from partedit_bench.engine.alignment import refinement_mapper, word_swap_mapper
    from partedit_bench.engine.clip_bpe import clip_tokenizer

    aligner = load_file(checkout / "prompt_to_prompt" / "seq_aligner.py", "p2p_seq_aligner")
    tokenizer = clip_tokenizer()
    kind, index = case.split(":")
    if kind == "replace":
        source, target = REPLACE[int(index)]
        theirs = aligner.get_replacement_mapper_(source, target, tokenizer).double()
        ours = word_swap_mapper(tokenizer, source, target)[0].double()
        OFFICIAL[case] = {"source": source, "target": target, "mapper": sparse(theirs)}
        diff, scale = max_abs(theirs, ours)
        return Row(case, f"word-swap mapper: {target!r}", diff, scale)
    source, target = REFINE[int(index)]
    mapper, alphas = aligner.get_refinement_mapper([source, target], tokenizer)
    mine, mine_alphas = refinement_mapper(tokenizer, source, target)
    OFFICIAL[case] = {
        "source": source,
        "target": target,
        "mapper": mapper[0].tolist(),
        "alphas": alphas[0].tolist(),
    }
    diff = max(max_abs(mapper[0], mine)[0], max_abs(alphas[0], mine_alphas)[0])
    return Row(case, f"refinement mapper and alphas: {target!r}", diff, 76.0)


def main(argv: list[str] | None = None) -> int:
    command = (
        "python -m benchmarks.parity.alignment --official OFFICIAL/DDPM_inversion --store FILE"
    )
    return main_with_store(
        argv, __doc__, METHOD, CHECKOUT, CASES, run_case, command,
        lambda: {"file": "prompt_to_prompt/seq_aligner.py", "cases": OFFICIAL},
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
