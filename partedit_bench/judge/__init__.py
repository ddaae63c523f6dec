"""An MLLM judge as a metric group (`evaluate --group judge`): VIEScore's semantic consistency
(SC), perceptual quality (PQ) and overall score for editing, with VIEScore's own prompt texts,
and a part-aware mode that also shows the judge the GT part outlined on the source and asks
whether that part was edited as asked and whether anything outside it changed.

Backends (`backends.py`): an image-text-to-text model in-process through transformers (default
Qwen/Qwen2.5-VL-7B-Instruct; any model id or folder), or any OpenAI-compatible chat endpoint
(`--judge-url`: a vLLM or SGLang server, `transformers serve`, or a hosted API with its key in
an environment variable). Every answer is cached per (model, prompt, images) and reused; an
answer without a readable score list is recorded as unparseable (NaN, counted in the report's
notes), never scored as 0.

| metric | question | images | value |
|---|---|---|---|
| `vie_sc` | VIEScore's editing SC: [editing success, overediting] | source, edit | min of the two |
| `vie_pq` | VIEScore's PQ: [naturalness, artifacts] | edit | min of the two |
| `vie_o` | VIEScore's overall | | sqrt(SC x PQ) |
| `part_edit_ok` | was the outlined part edited as asked | source, edit, source + outline | 0-10 |
| `outside_unchanged` | did nothing outside the outlined part change | same question | 0-10 |
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image

JUDGE_METRICS = ("vie_sc", "vie_pq", "vie_o", "part_edit_ok", "outside_unchanged")
MODES = ("vie", "part", "both")
DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
MAX_NEW_TOKENS = 256

#: Ours (not VIEScore's): the part-aware question, asked after VIEScore's context.
PART_RULE = """RULES:

Three images will be provided: the first is the original image, the second an edited version \
of it, and the third is the original image with one part outlined in red.
The editing instruction asks to change only the outlined part (<part>); everything outside it \
should stay as it is.

From scale 0 to 10:
A score from 0 to 10 will rate whether the outlined part was edited as the instruction asks. \
(0 indicates that the outlined part was not edited, or not as instructed. 10 indicates that the \
outlined part was edited exactly as the instruction asks.)
A second score from 0 to 10 will rate whether everything outside the outlined part stayed \
unchanged. (0 indicates that the image outside the outlined part changed completely. 10 \
indicates that nothing outside the outlined part changed.)
Put the score in a list such that output score = [score1, score2], where 'score1' evaluates \
the edit of the outlined part and 'score2' evaluates the region outside it.

Editing instruction: <instruction>"""


@cache
def viescore_text(name: str) -> str:
    """One of VIEScore's prompt files (viescore/NOTICE), verbatim."""
    return resources.files(__package__).joinpath("viescore", f"{name}.txt").read_text("utf-8")


def sc_prompt(instruction: str) -> str:
    """VIEScore's editing SC prompt ("tie"): context, two-image rule, SC rule."""
    parts = ("context_no_delimit", "two_image_edit_rule", "tie_rule_SC")
    return "\n".join(viescore_text(p) for p in parts).replace("<instruction>", instruction)


def pq_prompt() -> str:
    """VIEScore's PQ prompt: context and the PQ rule (asked of the edit alone)."""
    return "\n".join(viescore_text(p) for p in ("context_no_delimit", "rule_PQ"))


def part_prompt(instruction: str, part: str) -> str:
    """The part-aware question, after VIEScore's context (its output format)."""
    rule = PART_RULE.replace("<instruction>", instruction).replace("<part>", part)
    return "\n".join((viescore_text("context_no_delimit"), rule))


def parse_scores(answer: str, count: int = 2) -> list[float] | None:
    """The `score` list of the first JSON object in an answer, `count` numbers in [0, 10], or
    None (unparseable: no object, no score list, another length, a value out of range)."""
    for match in re.finditer(r"\{.*?\}", answer, flags=re.DOTALL):
        text = match.group(0)
        try:
            data = json.loads(text)
        except ValueError:
            found = re.search(r'"score"\s*:\s*\[([^\]]*)\]', text)
            if not found:
                continue
            try:
                data = {"score": json.loads(f"[{found.group(1)}]")}
            except ValueError:
                continue
        scores = data.get("score") if isinstance(data, dict) else None
        if not isinstance(scores, list) or len(scores) != count:
            return None
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
            return None
        if not all(0 <= s <= 10 for s in scores):
            return None
        return [float(s) for s in scores]
    return None


def outlined(image: np.ndarray, mask: np.ndarray, width: int = 2) -> Image.Image:
    """The source with the part's boundary drawn in red (`width` pixels inside the part)."""
    from scipy.ndimage import binary_erosion

    mask = mask.astype(bool)
    inner = binary_erosion(mask, iterations=width, border_value=0)
    out = np.round(np.asarray(image) * 255).astype(np.uint8).copy()
    out[mask & ~inner] = (255, 0, 0)
    return Image.fromarray(out)


def to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.asarray(array) * 255).astype(np.uint8))


def image_digest(image: Image.Image) -> str:
    h = hashlib.sha256(f"{image.size}{image.mode}".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:16]


class JudgeGroup:
    """The `judge` metric group of one edit: asks the backend (through the answer cache) and
    turns its answers into values; `unparsed` counts the answers without a score list."""

    def __init__(self, backend: Any, mode: str = "both"):
        from partedit_bench.errors import UserError

        if mode not in MODES:
            raise UserError(f"--judge-mode {mode!r}: one of {', '.join(MODES)}")
        self.backend, self.mode = backend, mode
        self.manifest = {
            "group": "judge",
            "version": 1,
            "backend": backend.identity,
            "mode": mode,
            "generation": {"do_sample": False, "max_new_tokens": MAX_NEW_TOKENS},
            "prompts": {
                "vie_sc": hashlib.sha256(sc_prompt("<instruction>").encode()).hexdigest(),
                "vie_pq": hashlib.sha256(pq_prompt().encode()).hexdigest(),
                "part": hashlib.sha256(part_prompt("<instruction>", "<part>").encode()).hexdigest(),
            },
            "source": "VIEScore (TIGER-AI-Lab/VIEScore @ 2cbea4e) editing prompts, 0-shot; part "
            "mode: the GT part outlined in red on the source, our question",
        }

    def ask(self, images: list[Image.Image], prompt: str) -> list[float] | None:
        """The parsed scores of one question, from the cache or the backend."""
        from partedit_bench.io import atomic_write_bytes, json_bytes
        from partedit_bench.paths import cache_root

        key = hashlib.sha256(
            json.dumps(
                {
                    "model": self.backend.identity,
                    "prompt": hashlib.sha256(prompt.encode()).hexdigest(),
                    "images": [image_digest(i) for i in images],
                    "generation": self.manifest["generation"],
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:32]
        path = cache_root() / "judge" / f"{key}.json"
        try:
            answer = json.loads(path.read_text())["answer"]
        except (OSError, ValueError, KeyError):
            answer = self.backend.ask(images, prompt)
            atomic_write_bytes(
                path,
                json_bytes({"model": self.backend.identity, "prompt": prompt, "answer": answer}),
            )
        return parse_scores(answer)

    def __call__(self, e: Any) -> dict[str, float]:
        nan = float("nan")
        values = dict.fromkeys(JUDGE_METRICS, nan)
        unparsed = 0
        source, edited = to_image(e.source), to_image(e.edited)
        instruction = e.instruction or f"Change the image to: {e.fg_text}"
        if self.mode in ("vie", "both"):
            sc = self.ask([source, edited], sc_prompt(instruction))
            pq = self.ask([edited], pq_prompt())
            unparsed += (sc is None) + (pq is None)
            if sc is not None:
                values["vie_sc"] = min(sc)
            if pq is not None:
                values["vie_pq"] = min(pq)
            if sc is not None and pq is not None:
                values["vie_o"] = math.sqrt(min(sc) * min(pq))
        if self.mode in ("part", "both") and e.mask.any():
            part = self.ask(
                [source, edited, outlined(e.source, e.mask)], part_prompt(instruction, e.part)
            )
            unparsed += part is None
            if part is not None:
                values["part_edit_ok"], values["outside_unchanged"] = part
        values["judge_unparsed"] = float(unparsed)
        return values
