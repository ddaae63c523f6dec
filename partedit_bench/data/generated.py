"""Suites whose samples are generated, not listed: PartWorld (rendered procedurally, cached) and
prompt-config suites (PartEdit-Synth's prompts; `data build-synth` renders their images)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from partedit_bench.data import partworld
from partedit_bench.data.schema import Sample
from partedit_bench.errors import UserError, did_you_mean
from partedit_bench.io import atomic_write_bytes, png_bytes, read_yaml
from partedit_bench.paths import cache_root

# ---------------------------------------------------------------------------------------
# Generators


def generate_samples(spec: dict[str, Any], path: Path) -> list[Sample]:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "partworld":
        return partworld_samples(spec)
    if kind == "prompt-config":
        return prompt_config_samples(spec, path.parent)
    raise UserError(
        f"malformed suite file {path}: unknown generator {spec!r} (known: partworld, prompt-config)"
    )


def prompt_config_samples(spec: dict[str, Any], base: Path) -> list[Sample]:
    """PartEdit-Synth items sampled from a prompt configuration (subjects, edits, settings and
    templates per part) in the paper's class proportions; no images until `build-synth`."""
    config_path = base / str(spec.get("config", "prompts.yaml"))
    config = read_yaml(config_path)
    parts = list(spec.get("parts") or config)
    unknown = [p for p in parts if p not in config or p not in partworld.PART_CLASS]
    if unknown:
        raise UserError(f"{config_path}: no configuration for part {unknown[0]!r}")
    seed, count = int(spec.get("seed", 0)), int(spec.get("count", 60))
    samples = []
    for index, part in enumerate(part_schedule(parts, count)):
        rng = np.random.default_rng([seed, 2, index])
        entry = config[part]
        try:
            words = {
                key: str(entry[plural][int(rng.integers(len(entry[plural])))])
                for key, plural in (
                    ("subject", "subjects"),
                    ("edit", "edits"),
                    ("setting", "settings"),
                )
            }
            words["a_edit"] = ("an " if words["edit"][0] in "aeiou" else "a ") + words["edit"]
            t = entry["templates"]
            fields = {
                name: t[name].format(**words).strip()
                for name in ("original", "changed", "p2p_prompt", "p2p_template")
            }
            instructions = [i.format(**words) for i in t.get("instructions", [])][:3]
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UserError(f"{config_path}: malformed entry for {part}: {exc!r}") from exc
        if len(fields["p2p_prompt"].split()) != len(fields["p2p_template"].split()):
            raise UserError(
                f"{config_path}: {part} p2p_prompt and p2p_template differ in word "
                f"count for edit {words['edit']!r}"
            )
        samples.append(
            Sample(
                id=f"synth-{index:05d}",
                split="synth",
                class_name=str(entry.get("class_name", "")),
                part=str(entry.get("part", "")),
                part_token=part,
                subject=words["subject"],
                edit=words["edit"],
                prompt_original=fields["original"],
                prompt_changed=fields["changed"],
                p2p_prompt=fields["p2p_prompt"],
                p2p_template=fields["p2p_template"],
                instructp2p_edit=instructions,
                blend_words=list(entry.get("blend_words", [])),
                seed=int(rng.integers(2**31)),
                extra={"setting": words["setting"]},
            )
        )
    return samples


#: The paper's class proportions (5 quadrupeds : 4 bipeds : 2 chairs : 2 cars), split evenly
#: over each class's parts.
CLASS_WEIGHTS = {"quadruped": 5, "humanoid": 4, "chair": 2, "car": 2}


def part_schedule(parts: list[str], count: int, balance: str = "paper") -> list[str]:
    """The part of each sample index: a smooth weighted round robin over the parts, so any
    prefix of the schedule is as close to the weights as integers allow (and sample i does not
    depend on the suite size). `paper` weights follow CLASS_WEIGHTS, `uniform` cycles."""
    if balance == "uniform":
        weights = [1.0] * len(parts)
    else:
        per_class = {c: sum(partworld.PART_CLASS[p] == c for p in parts) for c in CLASS_WEIGHTS}
        weights = [
            CLASS_WEIGHTS[partworld.PART_CLASS[p]] / per_class[partworld.PART_CLASS[p]]
            for p in parts
        ]
    total, current, out = sum(weights), [0.0] * len(parts), []
    for _ in range(count):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        best = max(range(len(parts)), key=lambda i: (current[i], -i))
        current[best] -= total
        out.append(parts[best])
    return out


def multi_fields(parts: list[str], class_name: str) -> dict[str, Any]:
    """A multi-part sample names its parts and their plain words."""
    if len(parts) < 2:
        return {}
    words = partworld.CLASSES[class_name].part_words
    return {"part_tokens": parts, "part_words": {p: words[p] for p in parts}}


def partworld_samples(spec: dict[str, Any]) -> list[Sample]:
    """Renders (or reuses from the cache) a PartWorld suite; deterministic in `spec`.

    Spec keys: seed, count, resolution (32..512), parts (canonical names; default all seven),
    correlation (0..1: how often a caption ties two parts' colors), split (`eval`, or `train`
    for the token-training split, drawn from a separate random stream).
    """
    try:
        seed, count = int(spec.get("seed", 0)), int(spec.get("count", 32))
        resolution = int(spec.get("resolution", 64))
        parts = list(spec.get("parts") or partworld.PART_CLASS)
        correlation = float(spec.get("correlation", 0.5))
        role = str(spec.get("split", "eval"))
        per_edit = int(spec.get("parts_per_edit", 1))
        balance = str(spec.get("balance", "paper" if role == "eval" else "uniform"))
    except (TypeError, ValueError) as exc:
        raise UserError(f"malformed partworld generator {spec}: {exc}") from exc
    unknown = [p for p in parts if p not in partworld.PART_CLASS]
    if unknown:
        raise UserError(
            f"partworld has no part {unknown[0]!r}{did_you_mean(unknown[0], partworld.PART_CLASS)}"
        )
    if role not in ("eval", "train") or not 0 <= correlation <= 1:
        raise UserError(f"malformed partworld generator {spec}: split eval|train, correlation 0..1")
    if not 32 <= resolution <= 512:
        raise UserError(f"partworld resolution must be 32..512, got {resolution}")
    key = json.dumps(
        {
            "v": partworld.RENDERER_VERSION,
            "seed": seed,
            "res": resolution,
            "parts": parts,
            "rho": correlation,
            "split": role,
            "balance": balance,
            "multi": per_edit,
        },
        sort_keys=True,
    )
    folder = cache_root() / "partworld" / hashlib.sha256(key.encode()).hexdigest()[:12]
    if balance not in ("paper", "uniform"):
        raise UserError(f"malformed partworld generator {spec}: balance paper|uniform")
    if per_edit not in (1, 2):
        raise UserError(f"malformed partworld generator {spec}: parts_per_edit 1 or 2")
    schedule: list[tuple[str, ...]]
    if per_edit == 2:
        pairs = [p for p in partworld.MULTI_PART if set(p) <= set(parts)]
        if not pairs:
            raise UserError(
                f"partworld multi-part edits need a pair of {partworld.MULTI_PART} among the parts"
            )
        schedule = [pairs[i % len(pairs)] for i in range(count)]
    else:
        schedule = [(p,) for p in part_schedule(parts, count, balance)]
    stream = 0 if role == "eval" else 1
    prefix = ("pw" if role == "eval" else "pwt") + ("m" if per_edit == 2 else "")
    samples = []
    for index in range(count):
        rng = np.random.default_rng([seed, stream + 10 * (per_edit - 1), index])
        edited_parts = list(schedule[index])
        part = edited_parts[0]
        class_name = partworld.PART_CLASS[part]
        scene = partworld.sample_scene(rng, class_name, correlation)
        target, fields = partworld.sample_edits(scene, edited_parts, rng)
        sample_id = f"{prefix}{seed}-{index:05d}"
        paths = {
            k: folder / f"{sample_id}{s}.png"
            for k, s in (("image", ""), ("mask", "_mask"), ("target", "_target"))
        }
        if not all(p.is_file() for p in paths.values()):
            source_pixels, shapes = partworld.render(scene, resolution)
            target_pixels, target_shapes = partworld.render(target, resolution)
            region = np.logical_or.reduce(
                [partworld.part_mask(shapes, p, class_name) for p in edited_parts]
                + [partworld.part_mask(target_shapes, p, class_name) for p in edited_parts]
            )
            mask_png = png_bytes(Image.fromarray(region.astype(np.uint8) * 255))
            atomic_write_bytes(paths["target"], png_bytes(Image.fromarray(target_pixels)))
            atomic_write_bytes(paths["mask"], mask_png)
            atomic_write_bytes(paths["image"], png_bytes(Image.fromarray(source_pixels)))
        samples.append(
            Sample(
                id=sample_id,
                split="synth",
                class_name=class_name,
                part=partworld.CLASSES[class_name].part_words[part],
                part_token=part,
                seed=index,
                original_image=str(paths["image"]),
                gt_mask=str(paths["mask"]),
                extra={
                    "gt_edited_image": str(paths["target"]),
                    "edit_kind": fields.pop("edit_kind"),
                    "renderer": partworld.RENDERER_VERSION,
                    **multi_fields(edited_parts, class_name),
                },
                **fields,
            )
        )
    return samples
