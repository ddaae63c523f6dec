"""`report/gallery.html`: rows = samples, columns = source | GT mask overlay | the true edit
(when the suite has one) | each method's edit, PartEdit's first (and its mask, as an overlay on
the source, stretched to its range, with its outline and the GT part's outline in green),
every metric under every edit, the prompts; filter by part and method, sort worst-first by any
metric of any method. Self-contained: every image is copied into `report/gallery/`, so the
report folder can be moved or sent as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from partedit_bench.data.masks import mask_view, outline
from partedit_bench.data.schema import load_image, load_mask
from partedit_bench.io import atomic_write_bytes, png_bytes, script_json
from partedit_bench.metrics import METRICS
from partedit_bench.store import first_seed_edits, load_run, suite_samples

PAGE = Path(__file__).with_name("userstudy") / "gallery.html"


def overlay(image: Image.Image, mask: np.ndarray) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64).copy()
    pixels[mask] = pixels[mask] * 0.45 + np.array([255.0, 0.0, 0.0]) * 0.55
    return Image.fromarray(pixels.astype(np.uint8))


def write_gallery(root: Path, frame: pd.DataFrame, out: Path) -> Path:
    """Writes the gallery of run folder `root` into `out` (the report folder)."""
    info = load_run(root)
    samples = suite_samples(info)
    assets = out / "gallery"
    rows: dict[str, dict[str, Any]] = {}
    variants: list[str] = []
    seed, current = first_seed_edits(root, info)
    for path, record in current:
        sample = samples.get(record.sample_id)
        if sample is None:
            continue
        variant = record.variant + ("†" if record.uses_gt_mask else "")
        if variant not in variants:
            variants.append(variant)
        row = rows.get(sample.id)
        if row is None:
            image = load_image(sample.original_image)
            mask = load_mask(sample.gt_mask, image.size)
            atomic_write_bytes(assets / f"{sample.id}_source.png", png_bytes(image))
            gt_view = overlay(image, mask)
            pixels = np.asarray(gt_view).copy()
            pixels[outline(mask)] = (0, 255, 0)
            atomic_write_bytes(assets / f"{sample.id}_gt.png", png_bytes(Image.fromarray(pixels)))
            row = rows[sample.id] = {
                "id": sample.id,
                "part": sample.part_token,
                "split": sample.split,
                "prompt_original": sample.prompt_original,
                "prompt_changed": sample.prompt_changed,
                "source": f"gallery/{sample.id}_source.png",
                "gt": f"gallery/{sample.id}_gt.png",
                "true": None,
                "edits": {},
                "metrics": {},
            }
            true_edit = sample.extra.get("gt_edited_image")
            if true_edit and Path(true_edit).is_file():  # the suite's exact edited image
                copied = png_bytes(load_image(true_edit))
                atomic_write_bytes(assets / f"{sample.id}_true.png", copied)
                row["true"] = f"gallery/{sample.id}_true.png"
        # the edit itself is copied beside the page: report/ is one folder that can be moved
        name = f"{sample.id}_edit{variants.index(variant)}.png"
        atomic_write_bytes(assets / name, (path.parent / str(record.image)).read_bytes())
        edit = {"image": f"gallery/{name}"}
        if record.predicted_mask:
            image = load_image(sample.original_image)
            with Image.open(path.parent / record.predicted_mask) as stored:
                soft = np.asarray(stored.convert("L"), np.float64) / 255.0
            name = f"{sample.id}_mask{variants.index(variant)}.png"
            gt = load_mask(sample.gt_mask, image.size)
            atomic_write_bytes(assets / name, png_bytes(mask_view(image, soft, gt)))
            edit["mask"] = f"gallery/{name}"
        row["edits"][variant] = edit
    ok = frame[(frame.status == "ok") & (frame.run == str(root)) & (frame.seed == seed)]
    metric_names = [m for m in METRICS if m in ok and ok[m].notna().any()]
    for r in ok.itertuples(index=False):
        if r.sample_id in rows:
            rows[r.sample_id]["metrics"][r.variant] = {
                m: (None if pd.isna(getattr(r, m)) else float(getattr(r, m))) for m in metric_names
            }
    # the reference column (first, and what the sort reads by default): PartEdit when it ran
    reference = next((v for v in variants if v == "partedit"), None) or next(
        (v for v in variants if v.startswith("partedit")), variants[0] if variants else None
    )
    if reference is not None:
        variants.remove(reference)
        variants.insert(0, reference)
    data = {
        "plots": sorted(f"plots/{p.name}" for p in (out / "plots").glob("*.png")),
        "seed": seed,
        "reference": reference,
        "variants": variants,
        "rows": list(rows.values()),
        "metrics": {m: METRICS[m].higher_is_better for m in metric_names},
    }
    page = PAGE.read_text().replace("/*GALLERY*/null", script_json(data))
    atomic_write_bytes(out / "gallery.html", page.encode())
    return out / "gallery.html"
