"""The canonical parts and every other spelling of them (datasets, token files), and the
reading of published prompt text: which words name the part edit."""

from __future__ import annotations

import re
from typing import Any

from partedit_bench.data.schema import CANONICAL_PARTS

#: (class name, part name) as other datasets and the official token files spell them.
PART_ALIASES: dict[str, str] = {
    "human_head": "humanoid-head",
    "biped_head": "humanoid-head",
    "humanoid_head": "humanoid-head",
    "person_head": "humanoid-head",
    "human_hair": "human-hair",
    "person_hair": "human-hair",
    "hair": "human-hair",
    "human_torso": "humanoid-torso",
    "human_torso_custom": "humanoid-torso",
    "humanoid_torso": "humanoid-torso",
    "humanoid_hair": "human-hair",
    "torso_custom": "humanoid-torso",
    "biped_torso": "humanoid-torso",
    "person_torso": "humanoid-torso",
    "quadruped_head": "animal-head",
    "animal_head": "animal-head",
    "carbody": "car-body",
    "car_body": "car-body",
    "carhood_custom": "car-hood",
    "car_hood": "car-hood",
    "carhood": "car-hood",
    "chair_custom": "chair-seat",
    "chair_seat": "chair-seat",
}
HUMAN_CLASSES = {"human", "humanoid", "person", "man", "woman", "biped"}
ANIMAL_CLASSES = {"quadruped", "animal", "dog", "cat", "cow", "horse", "sheep", "bird"}


def canonical_part(*names: Any) -> str | None:
    """Maps a dataset's (class_name, part) or a token file name onto a canonical part."""
    for name in names:
        if not name:
            continue
        text = str(name).strip().lower().replace("-", "_").replace(" ", "_").strip("<>")
        if text.replace("_", "-") in CANONICAL_PARTS:
            return text.replace("_", "-")
        if text in PART_ALIASES:
            return PART_ALIASES[text]
    cls = str(names[0] or "").lower() if names else ""
    part = str(names[1] or "").lower() if len(names) > 1 else ""
    if part in ("head", "face"):
        if cls in HUMAN_CLASSES:
            return "humanoid-head"
        if cls in ANIMAL_CLASSES:
            return "animal-head"
    if cls in HUMAN_CLASSES and part in ("torso", "body"):
        return "humanoid-torso"
    if cls == "car" and part in ("body", "hood"):
        return f"car-{part}"
    if cls == "chair" and part == "seat":
        return "chair-seat"
    if part == "hair" and (cls in HUMAN_CLASSES or cls.endswith("hair")):
        return "human-hair"
    return None


HUMAN_SUBJECTS = {"man", "woman", "person", "boy", "girl", "child", "lady", "guy", "people"}


def partedit_prompt(prompt: str, edit: str, part: str, token: str) -> str | None:
    """The dataset's edit prompt with the part token: the part words after the edit become
    `<token>` ("a dog with cat head running" -> "a dog with cat <animal-head> running"), as
    the official demo builds "with <edit> <part>"; else the last whole-word occurrence of the
    part words; None when the part words are not in the prompt."""
    if re.search(r"<[^<>]+>", prompt):
        return prompt
    if not part:
        return None
    for pattern in (
        rf"(?<![\w-])({re.escape(edit)}\s+){re.escape(part)}(?![\w-])" if edit else None,
        rf"(?<![\w-])(){re.escape(part)}(?![\w-])",
    ):
        if pattern is None:
            continue
        found = list(re.finditer(pattern, prompt))
        if found:
            m = found[-1]
            return prompt[: m.start()] + m.group(1) + f"<{token}>" + prompt[m.end() :]
    return None


def _names(text: str, words: str) -> bool:
    return (
        bool(words) and re.search(rf"(?<![\w-]){re.escape(words)}(?![\w-])", text, re.I) is not None
    )


def p2p_pair(row: dict[str, Any]) -> tuple[str, str] | None:
    """(source, target) of Prompt-to-Prompt from a published row, by content rather than by
    field name: the target is the dataset's `p2p_prompt` or `p2p_template` that names the
    edit (in the published rows `p2p_prompt` is the edited text, "A bear with tiger head at a
    pool"); the source is the other one when it is a plain prompt that does not name the edit,
    else `prompt_original`. None when neither names the edit."""
    edit = str(row.get("edit") or "")
    texts = [str(row.get(k) or "").strip() for k in ("p2p_prompt", "p2p_template")]
    original = str(row.get("prompt_original") or "")
    for target, other in (texts, texts[::-1]):
        if target and _names(target, edit):
            plain = other and not _names(other, edit) and not re.search(r"[{}\[\]<>]", other)
            return (other if plain else original), target
    return None


def label_warning(part_token: str, subject: str) -> str | None:
    """A row whose part class contradicts its subject (the published real row 6 is labelled
    animal_head but shows a man): reported, never guessed."""
    words = set(re.findall(r"[a-z]+", subject.lower()))
    if part_token == "animal-head" and words & HUMAN_SUBJECTS:
        return f"labelled {part_token} but its subject is '{subject}'"
    return None
