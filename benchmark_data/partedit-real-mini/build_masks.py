"""Rasterizes polygons.yaml into masks/<image>-<part>.png and draws contact_sheet.jpg.

Run from the repository root: .venv/bin/python benchmark_data/partedit-real-mini/build_masks.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from partedit_bench.data.masks import mask_to_image, polygons_to_mask
from partedit_bench.data.suites import package_image

HERE = Path(__file__).parent
SOURCES = {
    "astronaut": "pkg:skimage/astronaut",
    "camera": "pkg:skimage/camera",
    "chelsea": "pkg:skimage/chelsea",
    "grace_hopper": "pkg:matplotlib/grace_hopper.jpg",
}
COLORS = {"head": (255, 0, 0), "hair": (0, 255, 0), "torso": (0, 0, 255)}


def main() -> None:
    polygons = yaml.safe_load((HERE / "polygons.yaml").read_text())
    tiles = []
    for image_name, parts in polygons.items():
        image = Image.open(package_image(SOURCES[image_name])).convert("RGB")
        for part, shapes in parts.items():
            mask = polygons_to_mask(shapes, image.size)
            (HERE / "masks").mkdir(exist_ok=True)
            mask_to_image(mask).save(HERE / "masks" / f"{image_name}-{part}.png")
            pixels = np.asarray(image).astype(np.float64)
            pixels[mask] = pixels[mask] * 0.5 + np.array(COLORS[part]) * 0.5
            tile = Image.fromarray(pixels.astype(np.uint8))
            ImageDraw.Draw(tile).text((6, 6), f"{image_name} / {part}", fill=(255, 255, 0))
            tile.thumbnail((256, 256))
            tiles.append(tile)
    columns = 4
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * 256, rows * 256), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * 256, (i // columns) * 256))
    sheet.save(HERE / "contact_sheet.jpg", quality=85)


if __name__ == "__main__":
    main()
