"""Token alignment of a source and a target prompt, for the attention replacement of
prompt-to-prompt (Hertz et al., ICLR 2023) and of the PartEdit pipeline built on it.

Two alignments, as the reference code defines them:
- word swap (equal word counts): the target tokens of a changed word take the maps of the
  source word's tokens; every other token keeps its position;
- refinement (words added or removed): a global alignment of the two token sequences; target
  tokens without a source partner keep their own maps.
Words are the prompt split on single spaces; CLIP's BPE never merges across whitespace, so a
prompt's tokens are its words' tokens in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

LENGTH = 77


class NotWordAligned(ValueError):
    """The two prompts have different word counts: a word swap is undefined."""


def word_token_positions(tokenizer: Any, words: list[str], length: int = LENGTH) -> list[list[int]]:
    """Token positions (after the start token) of each word."""
    positions, start = [], 1
    for word in words:
        count = len(tokenizer(word, add_special_tokens=False).input_ids)
        positions.append([p for p in range(start, start + count) if p < length])
        start += count
    return positions


def positions_of_words(tokenizer: Any, prompt: str, words: list[str]) -> list[int]:
    """Token positions of every word of `prompt` equal to one of `words` (whole words)."""
    split = prompt.split(" ")
    spans = word_token_positions(tokenizer, split)
    wanted = set(words)
    return sorted(
        {p for word, span in zip(split, spans, strict=True) if word in wanted for p in span}
    )


def word_swap_mapper(
    tokenizer: Any, source: str, target: str, length: int = LENGTH
) -> tuple[torch.Tensor, list[int], list[list[int]]]:
    """(length, length) mapper M with target maps = source maps @ M, the indices of the
    changed words, and the target words' token positions.

    A changed word's target tokens take the source word's maps one to one when the token
    counts agree, else each target token the source tokens' maps shared equally; tokens between
    changed words follow in step; after the last changed word each position maps onto itself
    (as the reference mapper does, so a changed token count shifts the tail).

    Raises:
        NotWordAligned: the prompts differ in word count.
    """
    src_words, tgt_words = source.split(" "), target.split(" ")
    if len(src_words) != len(tgt_words):
        raise NotWordAligned(f"prompts differ in word count ({len(src_words)} vs {len(tgt_words)})")
    changed = [i for i, (a, b) in enumerate(zip(src_words, tgt_words, strict=True)) if a != b]
    src_pos = word_token_positions(tokenizer, src_words, length)
    tgt_pos = word_token_positions(tokenizer, tgt_words, length)
    mapper = np.zeros((length, length))
    i = j = k = 0
    while i < length and j < length:
        if k < len(changed) and src_pos[changed[k]] and src_pos[changed[k]][0] == i:
            a, b = src_pos[changed[k]], tgt_pos[changed[k]]
            if len(a) == len(b):
                mapper[a, b] = 1
            else:
                for t in b:
                    mapper[a, t] = 1 / len(b)
            i, j, k = i + len(a), j + len(b), k + 1
        elif k < len(changed):
            mapper[i, j] = 1
            i, j = i + 1, j + 1
        else:
            mapper[j, j] = 1
            i, j = i + 1, j + 1
    return torch.from_numpy(mapper), changed, tgt_pos


def _global_alignment(x: list[int], y: list[int]) -> list[int]:
    """For each element of y the index of its partner in x, or -1: a Needleman-Wunsch
    alignment with gap 0, match 1, mismatch -1; ties prefer a gap in x, then a gap in y, then
    the diagonal; traced back from the end."""
    n, m = len(x), len(y)
    score = np.zeros((n + 1, m + 1), dtype=np.int64)
    trace = np.zeros((n + 1, m + 1), dtype=np.int64)
    trace[0, 1:], trace[1:, 0] = 1, 2  # the borders: only gaps lead back to (0, 0)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            left, up = score[i, j - 1], score[i - 1, j]
            diag = score[i - 1, j - 1] + (1 if x[i - 1] == y[j - 1] else -1)
            best = max(left, up, diag)
            score[i, j] = best
            trace[i, j] = 1 if best == left else 2 if best == up else 3
    partner: list[int] = []
    i, j = n, m
    while i > 0 or j > 0:
        move = trace[i, j]
        if move == 3:
            i, j = i - 1, j - 1
            partner.append(i)
        elif move == 1:
            j -= 1
            partner.append(-1)
        else:  # 2: a gap in y
            i -= 1
    return partner[::-1]


def refinement_mapper(
    tokenizer: Any, source: str, target: str, length: int = LENGTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """(length,) source index of each target token and (length,) 1 where the token has a source
    partner (its maps are replaced), from the global alignment of the two token sequences
    (start and end tokens included); padding positions map onto themselves."""
    x = tokenizer(source, truncation=True, max_length=length).input_ids
    y = tokenizer(target, truncation=True, max_length=length).input_ids
    partner = _global_alignment(x, y)
    # token bookkeeping, on the CPU: the processors move it to the latents' device
    mapper = torch.arange(length, device="cpu")
    alphas = torch.ones(length, device="cpu")
    mapper[: len(partner)] = torch.tensor(partner, dtype=torch.long, device="cpu")
    alphas[: len(partner)] = (mapper[: len(partner)] >= 0).float()
    return mapper, alphas
