"""PartWorld: procedurally rendered objects with parts, exact part masks and exact edits.

Every scene is a function of (seed, sample index): the same seed gives the same bytes at any
suite size. Shapes are rasterized without anti-aliasing, so a part mask is exactly the set of
pixels the part covers, and the true edited image (the same scene with one part changed)
differs from the source only inside the edit region (the union of the part before and after,
which matters for shape edits).

Classes and parts: humanoid (humanoid-head, human-hair, humanoid-torso), quadruped
(animal-head), car (car-body, car-hood), chair (chair-seat). Edits: color, pattern, or a shape
variant. Captions can tie one part's color to another's with probability `correlation` (hair
to shirt, hood to body, head to body, seat to frame), the entanglement that makes plain edit
prompts leak onto other parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from partedit_bench.errors import UserError

RENDERER_VERSION = 2

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
    "brown": (120, 75, 40),
    "gray": (128, 128, 128),
}
HAIR_COLORS = ("brown", "black", "blonde", "red", "white")
HAIR_RGB = {
    "brown": (110, 70, 35),
    "black": (20, 20, 20),
    "blonde": (230, 200, 110),
    "red": (170, 50, 25),
    "white": (225, 225, 225),
}
#: Hair color -> the shirt color a correlated caption pairs it with.
HAIR_TO_SHIRT = {
    "brown": "orange",
    "black": "black",
    "blonde": "yellow",
    "red": "red",
    "white": "white",
}
SKIN = [(241, 194, 150), (224, 172, 125), (198, 134, 66), (141, 85, 36), (255, 219, 172)]
SETTINGS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "in a park": ((150, 200, 240), (80, 150, 70)),
    "on a beach": ((120, 190, 235), (225, 205, 150)),
    "in a studio": ((200, 200, 205), (150, 150, 155)),
    "at night": ((20, 25, 60), (45, 45, 70)),
    "in a desert": ((240, 200, 150), (200, 160, 100)),
    "on a street": ((170, 190, 210), (90, 90, 95)),
}
EDIT_COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "golden")


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _rgb(name: str) -> np.ndarray:
    return np.array(COLORS.get(name) or HAIR_RGB[name], dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Geometry helpers (unit coordinates: x, y in [0, 1], y down)


def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(resolution, dtype=np.float64) + 0.5) / resolution
    return np.meshgrid(coords, coords, indexing="xy")


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _rect(x, y, x0, x1, y0, y1):
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def _triangle(x, y, p0, p1, p2):
    def side(a, b):
        return (x - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (y - b[1])

    d1, d2, d3 = side(p0, p1), side(p1, p2), side(p2, p0)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def _fill(color: str, pattern: str, x, y, scale: float) -> np.ndarray:
    """A color, striped or spotted with white (black on white), as (H, W, 3)."""
    base = np.broadcast_to(_rgb(color), x.shape + (3,)).copy()
    other = _rgb("black" if color == "white" else "white")
    if pattern == "striped":
        base[np.floor(y / (0.04 * scale)) % 2 == 1] = other
    elif pattern == "spotted":
        cell = 0.06 * scale
        u, v = (x / cell) % 1.0 - 0.5, (y / cell) % 1.0 - 0.5
        base[u * u + v * v < 0.09] = other
    elif pattern == "checkered":
        cell = 0.05 * scale
        base[(np.floor(x / cell) + np.floor(y / cell)) % 2 == 1] = other
    return base


@dataclass
class Shape:
    name: str
    region: np.ndarray
    fill: np.ndarray  # (3,) or (H, W, 3)


# ---------------------------------------------------------------------------------------
# Object classes: attributes, shapes, captions, edits


@dataclass
class Edit:
    """An edit of one part, with the words that describe it.

    `old` is the phrase in the source caption; `aligned` the same part in a word-aligned P2P
    source (same word count as `after`); `after` the edited phrase; `token` the edited phrase
    with the part token.
    """

    kind: str  # color | pattern | shape
    changes: dict[str, Any]
    new: str  # the dataset's `edit` field
    old: str
    aligned: str
    after: str
    token: str


@dataclass
class ObjectClass:
    name: str
    parts: dict[str, tuple[str, ...]]  # canonical part -> shape names
    part_words: dict[str, str]  # canonical part -> plain words
    sample: Callable[[np.random.Generator, float], dict[str, Any]]
    shapes: Callable[[dict[str, Any], np.ndarray, np.ndarray], list[Shape]]
    describe: Callable[[dict[str, Any]], str]
    edit: Callable[[dict[str, Any], str, np.random.Generator], Edit]
    subject: Callable[[dict[str, Any]], str]


def _pick(rng: np.random.Generator, options, exclude=()) -> str:
    choices = [o for o in options if o not in exclude]
    return str(choices[int(rng.integers(len(choices)))])


def _placement(rng: np.random.Generator, low: float, high: float) -> dict[str, float]:
    scale = float(rng.uniform(low, high))
    margin = (1 - scale) / 2
    return {
        "scale": scale,
        "cx": float(rng.uniform(0.5 - 0.8 * margin, 0.5 + 0.8 * margin)),
        "top": float(rng.uniform(0.03, max(0.04, 0.97 - scale))),
    }


def _recolor(
    current: str,
    words: str,
    token: str,
    attr: str,
    rng: np.random.Generator,
    pattern: str = "",
    article: bool = True,
    exclude: tuple[str, ...] = (),
) -> Edit:
    """A color edit of the phrase `[a] <current> [pattern] <words>`."""
    new = _pick(rng, EDIT_COLORS, exclude=(current, *exclude))
    wrap = _article if article else (lambda t: t)
    old = wrap(f"{current} {pattern}{words}")
    return Edit(
        "color",
        {attr: new},
        new,
        old,
        old,
        wrap(f"{new} {pattern}{words}"),
        wrap(f"{new} {pattern}<{token}>"),
    )


def _variant(
    attr: str,
    value: Any,
    new: str,
    before_word: str,
    current: str,
    words: str,
    token: str,
    kind: str,
) -> Edit:
    """A pattern or shape edit `a <color> <words>` -> `a <color> <new> <words>`."""
    return Edit(
        kind,
        {attr: value},
        new,
        _article(f"{current} {words}"),
        _article(f"{current} {before_word} {words}"),
        _article(f"{current} {new} {words}"),
        _article(f"{current} {new} <{token}>"),
    )


# humanoid ------------------------------------------------------------------------------


def _humanoid_sample(rng: np.random.Generator, correlation: float) -> dict[str, Any]:
    hair = _pick(rng, HAIR_COLORS)
    shirt = (
        HAIR_TO_SHIRT[hair]
        if rng.random() < correlation
        else _pick(
            rng, ("red", "green", "blue", "yellow", "purple", "orange", "pink", "white", "black")
        )
    )
    return {
        **_placement(rng, 0.7, 0.9),
        "skin": SKIN[int(rng.integers(len(SKIN)))],
        "hair": hair,
        "hair_style": "short" if rng.random() < 0.7 else "long",
        "shirt": shirt,
        "shirt_pattern": "striped" if rng.random() < 0.2 else "plain",
        "head_color": None,
    }


def _humanoid_shapes(a: dict[str, Any], x, y) -> list[Shape]:
    s, cx, top = a["scale"], a["cx"], a["top"]
    skin = np.array(a["skin"], np.float64)
    legs = _rect(x, y, cx - 0.09 * s, cx - 0.015 * s, top + 0.57 * s, top + s) | _rect(
        x, y, cx + 0.015 * s, cx + 0.09 * s, top + 0.57 * s, top + s
    )
    arms = _rect(x, y, cx - 0.19 * s, cx - 0.13 * s, top + 0.24 * s, top + 0.55 * s) | _rect(
        x, y, cx + 0.13 * s, cx + 0.19 * s, top + 0.24 * s, top + 0.55 * s
    )
    rel = np.clip((y - (top + 0.22 * s)) / (0.36 * s), 0, 1)
    torso = (
        (np.abs(x - cx) <= (0.14 - 0.03 * rel) * s) & (y >= top + 0.22 * s) & (y < top + 0.58 * s)
    )
    neck = _rect(x, y, cx - 0.03 * s, cx + 0.03 * s, top + 0.17 * s, top + 0.23 * s)
    face = _ellipse(x, y, cx, top + 0.11 * s, 0.075 * s, 0.095 * s)
    hair = _ellipse(x, y, cx, top + 0.095 * s, 0.085 * s, 0.095 * s) & (y < top + 0.075 * s)
    if a["hair_style"] == "long":
        hair |= _rect(x, y, cx - 0.095 * s, cx - 0.06 * s, top + 0.06 * s, top + 0.3 * s)
        hair |= _rect(x, y, cx + 0.06 * s, cx + 0.095 * s, top + 0.06 * s, top + 0.3 * s)
    head_rgb = _rgb(a["head_color"]) if a["head_color"] else None
    return [
        Shape("legs", legs, np.array((60, 60, 90), np.float64)),
        Shape("arms", arms, skin),
        Shape("torso", torso, _fill(a["shirt"], a["shirt_pattern"], x, y, s)),
        Shape("neck", neck, skin),
        Shape("face", face, head_rgb if head_rgb is not None else skin),
        Shape("hair", hair, head_rgb if head_rgb is not None else _rgb(a["hair"])),
    ]


def _hair_words(a: dict[str, Any]) -> str:
    return f"{a['hair']} {'long ' if a['hair_style'] == 'long' else ''}hair"


def _humanoid_describe(a: dict[str, Any]) -> str:
    pattern = "striped " if a["shirt_pattern"] == "striped" else ""
    shirt = _article(f"{a['shirt']} {pattern}shirt")
    return f"a person with {_hair_words(a)} wearing {shirt}"


def _humanoid_edit(a: dict[str, Any], part: str, rng: np.random.Generator) -> Edit:
    if part == "human-hair":
        if rng.random() < 0.3:  # shape edit: short <-> long (region = union of both)
            style = "short" if a["hair_style"] == "long" else "long"
            old = _hair_words(a)
            return Edit(
                "shape",
                {"hair_style": style},
                style,
                old,
                f"{a['hair']} {a['hair_style']} hair",
                f"{a['hair']} {style} hair",
                f"{a['hair']} {style} <{part}>",
            )
        long = "long " if a["hair_style"] == "long" else ""
        new = _pick(rng, HAIR_COLORS, exclude=(a["hair"],))
        old = _hair_words(a)
        return Edit(
            "color", {"hair": new}, new, old, old, f"{new} {long}hair", f"{new} {long}<{part}>"
        )
    if part == "humanoid-torso":
        pattern = "striped " if a["shirt_pattern"] == "striped" else ""
        if not pattern and rng.random() < 0.25:
            return _variant(
                "shirt_pattern", "striped", "striped", "plain", a["shirt"], "shirt", part, "pattern"
            )
        return _recolor(a["shirt"], "shirt", part, "shirt", rng, pattern, exclude=("golden",))
    if part == "humanoid-head":
        new = _pick(rng, ("golden", "green", "blue", "purple", "red"))
        old = f"with {_hair_words(a)}"
        return Edit(
            "color",
            {"head_color": new},
            new,
            old,
            f"with a {a['hair']}-haired head",
            f"with a {new} head",
            f"with a {new} <{part}>",
        )
    raise UserError(f"PartWorld humanoids have no part {part!r}")


# quadruped -----------------------------------------------------------------------------

ANIMALS = ("dog", "cat", "cow", "horse")
FUR = ("brown", "black", "white", "gray", "orange")


def _quadruped_sample(rng: np.random.Generator, correlation: float) -> dict[str, Any]:
    fur = _pick(rng, FUR)
    head = fur if rng.random() < correlation else _pick(rng, FUR, exclude=(fur,))
    return {
        **_placement(rng, 0.55, 0.85),
        "animal": _pick(rng, ANIMALS),
        "fur": fur,
        "head": head,
        "head_pattern": "plain",
        "horns": False,
        "facing": "left" if rng.random() < 0.5 else "right",
    }


def _quadruped_shapes(a: dict[str, Any], x, y) -> list[Shape]:
    s, cx, top = a["scale"], a["cx"], a["top"]
    d = -1.0 if a["facing"] == "left" else 1.0
    body_cy = top + 0.5 * s
    body = _ellipse(x, y, cx, body_cy, 0.32 * s, 0.15 * s)
    legs = np.zeros_like(body)
    for off in (-0.22, -0.1, 0.1, 0.22):
        legs |= _rect(x, y, cx + (off - 0.03) * s, cx + (off + 0.03) * s, body_cy, top + 0.92 * s)
    x0, x1 = sorted((cx - d * 0.3 * s, cx - d * 0.42 * s))
    tail = _rect(x, y, x0, x1, body_cy - 0.12 * s, body_cy - 0.08 * s)
    hx, hy = cx + d * 0.33 * s, top + 0.27 * s
    head = _ellipse(x, y, hx, hy, 0.12 * s, 0.11 * s)
    snout = _ellipse(x, y, hx + d * 0.1 * s, hy + 0.04 * s, 0.06 * s, 0.045 * s)
    ears = np.zeros_like(body)
    for side in (-1, 1):
        ears |= _triangle(
            x,
            y,
            (hx + side * 0.1 * s, hy - 0.06 * s),
            (hx + side * 0.03 * s, hy - 0.09 * s),
            (hx + side * 0.09 * s, hy - 0.17 * s),
        )
    fur = _rgb(a["fur"])
    head_fill = _fill(a["head"], a["head_pattern"], x, y, s)
    shapes = [
        Shape("legs", legs, fur * 0.8),
        Shape("tail", tail, fur),
        Shape("body", body, fur),
        Shape("ears", ears, head_fill),
        Shape("head", head, head_fill),
        Shape("snout", snout, head_fill * 0.85),
    ]
    if a["horns"]:
        horns = np.zeros_like(body)
        for side in (-1, 1):
            horns |= _triangle(
                x,
                y,
                (hx + side * 0.05 * s, hy - 0.08 * s),
                (hx + side * 0.01 * s, hy - 0.1 * s),
                (hx + side * 0.04 * s, hy - 0.24 * s),
            )
        shapes.append(Shape("horns", horns, np.array((240, 235, 210), np.float64)))
    return shapes


def _head_words(a: dict[str, Any]) -> str:
    return f"{a['head']} {'spotted ' if a['head_pattern'] == 'spotted' else ''}head"


def _quadruped_describe(a: dict[str, Any]) -> str:
    return f"{_article(a['fur'] + ' ' + a['animal'])} with {_article(_head_words(a))}"


def _quadruped_edit(a: dict[str, Any], part: str, rng: np.random.Generator) -> Edit:
    if part != "animal-head":
        raise UserError(f"PartWorld quadrupeds have no part {part!r}")
    roll = rng.random()
    if roll < 0.2:  # shape edit: horns grow (the edit region is the head plus the horns)
        return _variant("horns", True, "horned", "hornless", a["head"], "head", part, "shape")
    if roll < 0.4:
        return _variant(
            "head_pattern", "spotted", "spotted", "plain", a["head"], "head", part, "pattern"
        )
    return _recolor(a["head"], "head", part, "head", rng)


# car -----------------------------------------------------------------------------------

CAR_COLORS = ("red", "blue", "white", "black", "gray", "yellow", "green")


def _car_sample(rng: np.random.Generator, correlation: float) -> dict[str, Any]:
    body = _pick(rng, CAR_COLORS)
    hood = body if rng.random() < correlation else _pick(rng, CAR_COLORS, exclude=(body,))
    return {
        **_placement(rng, 0.6, 0.9),
        "body": body,
        "hood": hood,
        "hood_pattern": "plain",
        "body_pattern": "plain",
        "facing": "left" if rng.random() < 0.5 else "right",
    }


def _car_shapes(a: dict[str, Any], x, y) -> list[Shape]:
    s, cx, top = a["scale"], a["cx"], a["top"]
    d = -1.0 if a["facing"] == "left" else 1.0
    base_top, base_bottom = top + 0.45 * s, top + 0.72 * s
    lower = _rect(x, y, cx - 0.45 * s, cx + 0.45 * s, base_top, base_bottom)
    cabin = (
        _rect(x, y, cx - 0.25 * s, cx + 0.15 * s, top + 0.25 * s, base_top)
        if d > 0
        else _rect(x, y, cx - 0.15 * s, cx + 0.25 * s, top + 0.25 * s, base_top)
    )
    hood_x = sorted((cx + d * 0.15 * s, cx + d * 0.45 * s))
    hood = _rect(x, y, hood_x[0], hood_x[1], base_top - 0.06 * s, base_top + 0.06 * s)
    windows = _rect(
        x,
        y,
        cx - 0.2 * s + (0 if d > 0 else 0.1 * s),
        cx + 0.1 * s + (0 if d > 0 else 0.1 * s),
        top + 0.29 * s,
        base_top - 0.02 * s,
    )
    wheels = np.zeros_like(lower)
    for off in (-0.28, 0.28):
        wheels |= _ellipse(x, y, cx + off * s, base_bottom, 0.09 * s, 0.09 * s)
    body_fill = _fill(a["body"], a["body_pattern"], x, y, s)
    return [
        Shape("lower", lower, body_fill),
        Shape("cabin", cabin, body_fill),
        Shape("hood", hood, _fill(a["hood"], a["hood_pattern"], x, y, s)),
        Shape("windows", windows, np.array((150, 200, 230), np.float64)),
        Shape("wheels", wheels, np.array((30, 30, 30), np.float64)),
    ]


def _hood_words(a: dict[str, Any]) -> str:
    return f"{a['hood']} {'striped ' if a['hood_pattern'] == 'striped' else ''}hood"


def _car_describe(a: dict[str, Any]) -> str:
    return f"{_article(a['body'] + ' car')} with {_article(_hood_words(a))}"


def _car_edit(a: dict[str, Any], part: str, rng: np.random.Generator) -> Edit:
    if part == "car-body":
        new = _pick(rng, EDIT_COLORS, exclude=(a["body"],))
        old = _article(f"{a['body']} car")
        return Edit(
            "color",
            {"body": new},
            new,
            old,
            old,
            _article(f"{new} car"),
            _article(f"{new} <{part}>"),
        )
    if part == "car-hood":
        if a["hood_pattern"] == "plain" and rng.random() < 0.3:
            return _variant(
                "hood_pattern", "striped", "striped", "plain", a["hood"], "hood", part, "pattern"
            )
        pattern = "striped " if a["hood_pattern"] == "striped" else ""
        return _recolor(a["hood"], "hood", part, "hood", rng, pattern)
    raise UserError(f"PartWorld cars have no part {part!r}")


# chair ---------------------------------------------------------------------------------

FRAME = ("brown", "black", "white", "gray")


def _chair_sample(rng: np.random.Generator, correlation: float) -> dict[str, Any]:
    frame = _pick(rng, FRAME)
    seat = (
        frame
        if rng.random() < correlation
        else _pick(
            rng, ("red", "blue", "green", "brown", "black", "white", "gray"), exclude=(frame,)
        )
    )
    return {
        **_placement(rng, 0.55, 0.85),
        "frame": frame,
        "seat": seat,
        "seat_pattern": "plain",
        "cushion": False,
    }


def _chair_shapes(a: dict[str, Any], x, y) -> list[Shape]:
    s, cx, top = a["scale"], a["cx"], a["top"]
    seat_y = top + 0.55 * s
    frame = _rgb(a["frame"])
    back = _rect(x, y, cx - 0.22 * s, cx - 0.16 * s, top + 0.05 * s, seat_y) | _rect(
        x, y, cx - 0.22 * s, cx + 0.2 * s, top + 0.05 * s, top + 0.12 * s
    )
    legs = _rect(x, y, cx - 0.22 * s, cx - 0.17 * s, seat_y, top + s) | _rect(
        x, y, cx + 0.15 * s, cx + 0.2 * s, seat_y, top + s
    )
    thickness = 0.12 if a["cushion"] else 0.05
    seat = _rect(x, y, cx - 0.24 * s, cx + 0.22 * s, seat_y - thickness * s, seat_y + 0.03 * s)
    return [
        Shape("back", back, frame),
        Shape("legs", legs, frame * 0.9),
        Shape("seat", seat, _fill(a["seat"], a["seat_pattern"], x, y, s)),
    ]


def _seat_words(a: dict[str, Any]) -> str:
    return f"{a['seat']} {'checkered ' if a['seat_pattern'] == 'checkered' else ''}seat"


def _chair_describe(a: dict[str, Any]) -> str:
    return f"{_article(a['frame'] + ' chair')} with {_article(_seat_words(a))}"


def _chair_edit(a: dict[str, Any], part: str, rng: np.random.Generator) -> Edit:
    if part != "chair-seat":
        raise UserError(f"PartWorld chairs have no part {part!r}")
    roll = rng.random()
    if roll < 0.2 and not a["cushion"]:
        return _variant("cushion", True, "cushioned", "flat", a["seat"], "seat", part, "shape")
    if roll < 0.4 and a["seat_pattern"] == "plain":
        return _variant(
            "seat_pattern", "checkered", "checkered", "plain", a["seat"], "seat", part, "pattern"
        )
    pattern = "checkered " if a["seat_pattern"] == "checkered" else ""
    return _recolor(a["seat"], "seat", part, "seat", rng, pattern)


CLASSES: dict[str, ObjectClass] = {
    c.name: c
    for c in (
        ObjectClass(
            "humanoid",
            {
                "humanoid-head": ("face", "hair"),
                "human-hair": ("hair",),
                "humanoid-torso": ("torso",),
            },
            {"humanoid-head": "head", "human-hair": "hair", "humanoid-torso": "shirt"},
            _humanoid_sample,
            _humanoid_shapes,
            _humanoid_describe,
            _humanoid_edit,
            lambda a: "person",
        ),
        ObjectClass(
            "quadruped",
            {"animal-head": ("head", "ears", "snout", "horns")},
            {"animal-head": "head"},
            _quadruped_sample,
            _quadruped_shapes,
            _quadruped_describe,
            _quadruped_edit,
            lambda a: a["animal"],
        ),
        ObjectClass(
            "car",
            {"car-body": ("lower", "cabin"), "car-hood": ("hood",)},
            {"car-body": "car", "car-hood": "hood"},
            _car_sample,
            _car_shapes,
            _car_describe,
            _car_edit,
            lambda a: "car",
        ),
        ObjectClass(
            "chair",
            {"chair-seat": ("seat",)},
            {"chair-seat": "seat"},
            _chair_sample,
            _chair_shapes,
            _chair_describe,
            _chair_edit,
            lambda a: "chair",
        ),
    )
}
#: canonical part -> the class that has it
PART_CLASS = {part: c.name for c in CLASSES.values() for part in c.parts}


@dataclass
class Scene:
    class_name: str
    attrs: dict[str, Any]
    setting: str
    noise_seed: int


def _background(scene: Scene, resolution: int) -> np.ndarray:
    sky, ground = (np.array(c, dtype=np.float64) for c in SETTINGS[scene.setting])
    x, y = _grid(resolution)
    rng = np.random.default_rng(scene.noise_seed)
    horizon = float(rng.uniform(0.55, 0.75))
    t = np.clip((y - horizon) * 8 + 0.5, 0, 1)[..., None]
    img = sky * (1 - t) + ground * t
    # soft low-frequency texture (a sum of random smooth waves)
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 2 * np.pi)
        img += (np.sin(2 * np.pi * (fx * x + fy * y) + phase) * rng.uniform(3, 8))[..., None]
    return img


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
    visible: dict[str, np.ndarray] = {}
    for shape in CLASSES[scene.class_name].shapes(scene.attrs, x, y):
        for other in visible.values():
            other &= ~shape.region
        visible[shape.name] = shape.region.copy()
        fill = shape.fill
        img[shape.region] = fill[shape.region] if fill.ndim == 3 else fill
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), visible


def part_mask(shapes: dict[str, np.ndarray], part: str, class_name: str) -> np.ndarray:
    names = CLASSES[class_name].parts[part]
    empty = np.zeros(next(iter(shapes.values())).shape, bool)
    return np.logical_or.reduce([shapes.get(n, empty) for n in names])


def sample_scene(rng: np.random.Generator, class_name: str, correlation: float = 0.0) -> Scene:
    attrs = CLASSES[class_name].sample(rng, correlation)
    return Scene(class_name, attrs, _pick(rng, SETTINGS), int(rng.integers(2**31)))


def caption(scene: Scene) -> str:
    return f"a photo of {CLASSES[scene.class_name].describe(scene.attrs)} {scene.setting}"


def sample_edit(scene: Scene, part: str, rng: np.random.Generator) -> tuple[Scene, dict[str, Any]]:
    """Picks an edit of `part`; returns the edited scene and the sample's text fields."""
    return sample_edits(scene, [part], rng)


#: Parts whose caption phrases are disjoint, so two can be edited in one prompt.
MULTI_PART = (
    ("human-hair", "humanoid-torso"),
    ("humanoid-head", "humanoid-torso"),
    ("car-body", "car-hood"),
)


def sample_edits(
    scene: Scene, parts: list[str], rng: np.random.Generator
) -> tuple[Scene, dict[str, Any]]:
    """Picks an edit of each part (all from the source attributes); returns the edited scene
    and the text fields, with one part token per edited part in `prompt_changed`."""
    cls = CLASSES[scene.class_name]
    edits = [cls.edit(scene.attrs, part, rng) for part in parts]
    source = caption(scene)
    changes: dict[str, Any] = {}
    prompts = {"prompt_changed": source, "p2p_prompt": source, "p2p_template": source}
    for edit in edits:
        if edit.old not in source:
            raise AssertionError(f"edit phrase {edit.old!r} not in caption {source!r}")
        changes.update(edit.changes)
        prompts["prompt_changed"] = prompts["prompt_changed"].replace(edit.old, edit.token)
        prompts["p2p_prompt"] = prompts["p2p_prompt"].replace(edit.old, edit.aligned)
        prompts["p2p_template"] = prompts["p2p_template"].replace(edit.old, edit.after)
    target = Scene(scene.class_name, {**scene.attrs, **changes}, scene.setting, scene.noise_seed)
    words = [cls.part_words[p] for p in parts]
    news = [e.new for e in edits]
    subject = cls.subject(scene.attrs)
    what = " and ".join(f"the {w} {n}" for w, n in zip(words, news, strict=True))
    fields = {
        "subject": subject,
        "edit": " and ".join(news),
        "prompt_original": source,
        **prompts,
        "instructp2p_edit": [
            f"make {what}",
            f"change {what.replace(' the ', ' the ')}",
            f"turn the {subject}'s "
            + " and ".join(f"{w} {n}" for w, n in zip(words, news, strict=True)),
        ],
        "blend_words": words,
        "edit_kind": "+".join(e.kind for e in edits),
    }
    if len(parts) == 1:
        fields["instructp2p_edit"] = [
            f"make the {words[0]} {news[0]}",
            f"change the {words[0]} to {news[0]}",
            f"turn the {subject}'s {words[0]} {news[0]}",
        ]
    return target, fields
