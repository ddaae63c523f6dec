"""PartWorld: procedurally rendered objects with parts, exact part masks and exact edits.

Every scene is a function of (seed, sample index): the same seed gives the same bytes at any
suite size. Shapes are rasterized without anti-aliasing, so a part mask is exactly the set of
pixels the part covers, and the true edited image (the same scene with one part changed)
differs from the source only inside the edit region.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from partedit_bench.errors import UserError

RENDERER_VERSION = 1

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "green": (50, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (235, 210, 50),
    "purple": (130, 60, 170),
    "orange": (235, 130, 30),
    "white": (235, 235, 235),
    "black": (25, 25, 25),
    "pink": (240, 140, 180),
    "golden": (212, 175, 55),
}
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "brown": (110, 70, 35),
    "black": (20, 20, 20),
    "blonde": (230, 200, 110),
    "red": (170, 50, 25),
    "white": (225, 225, 225),
}
SKIN_COLORS = [(241, 194, 150), (224, 172, 125), (198, 134, 66), (141, 85, 36), (255, 219, 172)]
SETTINGS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "in a park": ((150, 200, 240), (80, 150, 70)),
    "on a beach": ((120, 190, 235), (225, 205, 150)),
    "in a studio": ((200, 200, 205), (150, 150, 155)),
    "at night": ((20, 25, 60), (45, 45, 70)),
    "in a desert": ((240, 200, 150), (200, 160, 100)),
}

#: Canonical part -> the shapes of a class that make it up.
CLASS_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "humanoid": {
        "humanoid-head": ("face", "hair"),
        "human-hair": ("hair",),
        "humanoid-torso": ("torso",),
    },
}
PART_WORDS = {"humanoid-head": "head", "human-hair": "hair", "humanoid-torso": "shirt"}


@dataclass
class Humanoid:
    """A standing person; coordinates in units of the image side."""

    cx: float
    top: float
    height: float
    skin: tuple[int, int, int]
    hair: str
    shirt: str
    shirt_pattern: str = "plain"
    head_color: str | None = None
    pants: tuple[int, int, int] = (60, 60, 90)


@dataclass
class Scene:
    setting: str
    obj: Humanoid
    noise_seed: int
    extras: dict[str, Any] = field(default_factory=dict)


def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(resolution, dtype=np.float64) + 0.5) / resolution
    return np.meshgrid(coords, coords, indexing="xy")  # x varies along columns


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _rect(x, y, x0, x1, y0, y1):
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def _background(scene: Scene, resolution: int) -> np.ndarray:
    sky, ground = (np.array(c, dtype=np.float64) for c in SETTINGS[scene.setting])
    x, y = _grid(resolution)
    horizon = 0.62
    t = np.clip((y - horizon) * 8 + 0.5, 0, 1)[..., None]
    img = sky * (1 - t) + ground * t
    rng = np.random.default_rng(scene.noise_seed)
    coarse = rng.normal(0, 1, (8, 8))
    idx = np.minimum((np.stack([y, x]) * 8).astype(int), 7)
    img += coarse[idx[0], idx[1]][..., None] * 6.0
    return img


def _humanoid_shapes(h: Humanoid, x: np.ndarray, y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The shapes of a person in drawing order (later ones cover earlier ones)."""
    s, cx, top = h.height, h.cx, h.top
    legs = _rect(x, y, cx - 0.09 * s, cx - 0.015 * s, top + 0.57 * s, top + s) | _rect(
        x, y, cx + 0.015 * s, cx + 0.09 * s, top + 0.57 * s, top + s
    )
    arms = _rect(x, y, cx - 0.19 * s, cx - 0.13 * s, top + 0.24 * s, top + 0.55 * s) | _rect(
        x, y, cx + 0.13 * s, cx + 0.19 * s, top + 0.24 * s, top + 0.55 * s
    )
    rel = np.clip((y - (top + 0.22 * s)) / (0.36 * s), 0, 1)
    half = (0.14 - 0.03 * rel) * s
    torso = (np.abs(x - cx) <= half) & (y >= top + 0.22 * s) & (y < top + 0.58 * s)
    neck = _rect(x, y, cx - 0.03 * s, cx + 0.03 * s, top + 0.17 * s, top + 0.23 * s)
    face = _ellipse(x, y, cx, top + 0.11 * s, 0.075 * s, 0.095 * s)
    hair = _ellipse(x, y, cx, top + 0.095 * s, 0.085 * s, 0.095 * s) & (y < top + 0.075 * s)
    return [
        ("legs", legs),
        ("arms", arms),
        ("torso", torso),
        ("neck", neck),
        ("face", face),
        ("hair", hair),
    ]


def _humanoid_colors(h: Humanoid, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    shirt = np.broadcast_to(np.array(COLORS[h.shirt], dtype=np.float64), x.shape + (3,)).copy()
    if h.shirt_pattern == "striped":
        stripes = (np.floor((y - h.top) / (0.05 * h.height)) % 2 == 1)[..., None]
        shirt = np.where(stripes, np.array(COLORS["white"], dtype=np.float64), shirt)
    skin = np.array(h.skin, dtype=np.float64)
    face = np.array(COLORS[h.head_color], dtype=np.float64) if h.head_color else skin
    hair = np.array(COLORS[h.head_color] if h.head_color else HAIR_COLORS[h.hair], np.float64)
    return {
        "legs": np.array(h.pants, np.float64),
        "arms": skin,
        "torso": shirt,
        "neck": skin,
        "face": face,
        "hair": hair,
    }


def render(scene: Scene, resolution: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Renders a scene.

    Returns:
        image: (R, R, 3) uint8.
        shapes: shape name -> (R, R) bool, the pixels where that shape is visible.
    """
    if not 32 <= resolution <= 512:
        raise UserError(f"PartWorld renders 32 to 512 px, got {resolution}")
    x, y = _grid(resolution)
    img = _background(scene, resolution)
    colors = _humanoid_colors(scene.obj, x, y)
    visible: dict[str, np.ndarray] = {}
    for name, region in _humanoid_shapes(scene.obj, x, y):
        for other in visible.values():
            other &= ~region
        visible[name] = region.copy()
        color = colors[name]
        img[region] = color[region] if color.ndim == 3 else color
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), visible


def part_mask(shapes: dict[str, np.ndarray], part: str, class_name: str = "humanoid") -> np.ndarray:
    names = CLASS_PARTS[class_name][part]
    return np.logical_or.reduce([shapes[n] for n in names])


def sample_scene(rng: np.random.Generator) -> Scene:
    hair = str(rng.choice(list(HAIR_COLORS)))
    shirt = str(rng.choice([c for c in COLORS if c != "golden"]))
    obj = Humanoid(
        cx=float(rng.uniform(0.3, 0.7)),
        top=float(rng.uniform(0.05, 0.15)),
        height=float(rng.uniform(0.7, 0.85)),
        skin=SKIN_COLORS[int(rng.integers(len(SKIN_COLORS)))],
        hair=hair,
        shirt=shirt,
        shirt_pattern="striped" if rng.random() < 0.2 else "plain",
    )
    return Scene(
        setting=str(rng.choice(list(SETTINGS))), obj=obj, noise_seed=int(rng.integers(2**31))
    )


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _shirt(color: str, pattern: str) -> str:
    return _with_article(f"{color} striped shirt" if pattern == "striped" else f"{color} shirt")


def describe(scene: Scene) -> str:
    h = scene.obj
    return (
        f"a photo of a person with {h.hair} hair wearing {_shirt(h.shirt, h.shirt_pattern)} "
        f"{scene.setting}"
    )


def sample_edit(scene: Scene, part: str, rng: np.random.Generator) -> tuple[Scene, dict[str, Any]]:
    """Picks an edit of `part` and returns the edited scene with the sample's text fields."""
    h = scene.obj
    source = describe(scene)
    word = PART_WORDS[part]
    # (phrase in the source, the same words in a word-aligned P2P source, the edited phrase,
    # the edited phrase with the part token)
    if part == "human-hair":
        new = str(rng.choice([c for c in HAIR_COLORS if c != h.hair]))
        edited = dataclasses.replace(h, hair=new)
        old = aligned = f"{h.hair} hair"
        changed, token = f"{new} hair", f"{new} <{part}>"
    elif part == "humanoid-torso":
        old = _shirt(h.shirt, h.shirt_pattern)
        if h.shirt_pattern == "plain" and rng.random() < 0.25:
            new = "striped"
            edited = dataclasses.replace(h, shirt_pattern="striped")
            aligned = _with_article(f"{h.shirt} plain shirt")
        else:
            new = str(rng.choice([c for c in COLORS if c not in (h.shirt, "golden", "white")]))
            edited = dataclasses.replace(h, shirt=new)
            aligned = old
        changed = _shirt(edited.shirt, edited.shirt_pattern)
        token = changed.replace("shirt", f"<{part}>")
    elif part == "humanoid-head":
        new = str(rng.choice(["golden", "green", "blue", "purple", "red"]))
        edited = dataclasses.replace(h, head_color=new)
        old, aligned = f"with {h.hair} hair", f"with a {h.hair}-haired head"
        changed, token = f"with a {new} head", f"with a {new} <{part}>"
    else:
        raise UserError(f"PartWorld humanoids have no part {part!r}")
    target = dataclasses.replace(scene, obj=edited)
    p2p_prompt, p2p_template = source.replace(old, aligned), source.replace(old, changed)
    with_token = source.replace(old, token)
    fields = {
        "subject": "person",
        "edit": new,
        "prompt_original": source,
        "prompt_changed": with_token,
        "p2p_prompt": p2p_prompt,
        "p2p_template": p2p_template,
        "instructp2p_edit": [
            f"make the {word} {new}",
            f"change the {word} to {new}",
            f"turn the person's {word} {new}",
        ],
        "blend_words": [word],
    }
    return target, fields
