"""The released pipeline's prompt-to-prompt word swap, layered on top of PartEdit's blending:
which edit tokens take the source's cross-attention maps, and for how many steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from partedit_bench.engine.alignment import word_swap_mapper


@dataclass
class WordSwap:
    """The word-swap attention replacement of one (source, edit) prompt pair.

    mapper: (77, 77), the source token each edit token's map comes from; window: (77,) 1 for
    the edit tokens whose map is replaced only during the first `window_steps` steps (the
    words named as the edit), 0 for tokens replaced at every step.
    """

    mapper: torch.Tensor
    window: torch.Tensor
    window_steps: int

    def alpha(self, step: int) -> torch.Tensor:
        """(77,) 1 where the edit path's map is the source's at this step."""
        if step < self.window_steps:
            return torch.ones_like(self.window)
        return 1 - self.window


def word_swap(
    tokenizer: Any,
    source: str,
    edit: str,
    window_words: str | None,
    window_fraction: float,
    steps: int,
) -> WordSwap:
    """The released pipeline's prompt-to-prompt word swap (`alignment.word_swap_mapper`).

    `window_words`: the edit tokens of target words equal to this string get the window of
    floor(window_fraction * (steps + 1)) steps; every other token is replaced at every step.
    None gives the window to every changed word.

    Raises:
        NotWordAligned: the prompts differ in word count.
    """
    mapper, changed, edit_pos = word_swap_mapper(tokenizer, source, edit)
    window = torch.zeros(mapper.shape[0], device=mapper.device)
    chosen = (
        changed
        if window_words is None
        else [w for w, word in enumerate(edit.split(" ")) if word == window_words]
    )
    for w in chosen:
        window[edit_pos[w]] = 1
    return WordSwap(mapper, window, int(window_fraction * (steps + 1)))
