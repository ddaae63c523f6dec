"""PartEdit's options (every default and where it comes from: README.md) and the sample's
parts and plain edit prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from partedit_bench.data.schema import CANONICAL_PARTS, PART_TOKEN, Sample, write_part_words


@dataclass
class PartEditOptions:
    """Defaults: the released pipeline as its demo calls it (see README.md, fidelity table)."""

    steps: int = 50
    guidance: float = 7.5
    t_e: int = 50
    threshold: Literal["adaptive", "soft", "binary", "otsu"] = "adaptive"
    omega: float = 1.5
    padding: Literal["bg", "sot", "eot", "zero", "context"] = "bg"
    mask_resolution: str = "auto"  # auto | latent | pixel | a size in pixels such as 1024
    mask_timing: Literal["official", "lagged"] = "official"
    p2p: bool = True
    cross_replace: float = 0.4
    p2p_words: Literal["edit", "changed"] = "edit"
    self_replace: float = 0.0
    mode: Literal["auto", "synthetic", "real"] = "auto"
    inversion: Literal["ef-ddpm", "ledits"] = "ef-ddpm"
    ledits_skip: float = 0.15
    source_guidance: float = 3.5
    zero_last_noise: bool = True  # EF-DDPM reference: the last noise map is zero
    tokens: str = ""
    layers: str = "auto"  # auto | token | decoder | official-40 | comma-separated attn2 names
    # where the blend mask comes from: tokens (the paper) | gt (the suite's part mask: an
    # oracle that isolates the blending) | grounded-sam | sam3 | tiny-* | a folder of masks
    mask_source: str = "tokens"

    def __post_init__(self) -> None:
        from partedit_bench.api import check_range

        check_range("partedit", "steps", self.steps, 1)
        check_range("partedit", "t_e", self.t_e, 0)
        check_range("partedit", "omega", self.omega, 0)
        for key in ("cross_replace", "self_replace", "ledits_skip"):
            check_range("partedit", key, getattr(self, key), 0, 1)
        from partedit_bench.engine.mask_sources import check_source

        check_source(str(self.mask_source), "partedit.mask_source")


def parts_of(sample: Sample) -> list[str]:
    """The part tokens an edit prompt names (several for a multi-part edit)."""
    found = [p for p in PART_TOKEN.findall(sample.prompt_changed) if p in CANONICAL_PARTS]
    return list(dict.fromkeys(found)) or [sample.part_token]


def plain_prompt(sample: Sample) -> str:
    """The edit prompt with each part token written as plain words."""
    words = dict(sample.extra.get("part_words") or {})
    words.setdefault(sample.part_token, sample.part or sample.part_token.split("-")[-1])

    def word(token: str) -> str:
        return words.get(token, token.split("-")[-1])

    return write_part_words(sample.prompt_changed or sample.prompt_original, word)
