"""`data build-synth`: a backbone renders the images of a prompt-config suite (PartEdit-Synth),
resumably; the only suite builder that needs a model, so it lives outside `data/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from partedit_bench.data.files_suite import write_files_suite
from partedit_bench.data.suites import load_suite
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, png_bytes
from partedit_bench.outputs import output_folder
from partedit_bench.paths import data_root


def build_synth(
    suite_name: str,
    backbone_name: str,
    output: str | None = None,
    steps: int = 50,
    guidance: float = 7.5,
    device: str = "auto",
    dtype: str = "auto",
    limit: int | None = None,
    console: Any = None,
) -> tuple[Path, list[str]]:
    """Renders the source image of every sample of a prompt-config suite with a backbone
    (text-to-image from `prompt_original`, a CPU generator seeded with the sample's `seed`),
    resumably, and writes a suite that records the backbone and settings. Returns the suite
    file and the ids that still need a GT mask."""
    import torch
    from rich.progress import Progress

    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.engine.devices import pick_device

    suite = load_suite(suite_name)
    if suite.definition.get("generator", {}).get("type") != "prompt-config":
        raise UserError(
            f"suite '{suite.name}' is not a prompt-config suite (build-synth renders "
            "the images of partedit-synth-style suites)"
        )
    short = Path(backbone_name).name
    folder = Path(output) if output else data_root() / f"{suite.name}@{short}"
    # resumable in its own folder; any other non-empty folder is never written into
    output_folder(folder, "build-synth --output", False, owned=_is_built, resume=True)
    backbone = load_backbone(backbone_name, pick_device(device), dtype)
    previous = {}
    if (folder / "samples.jsonl").is_file():
        for line in (folder / "samples.jsonl").read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                previous[entry["id"]] = entry
    pipe = backbone.pipeline()
    samples = suite.samples[:limit] if limit else suite.samples
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"build {suite.name} on {short}", total=len(samples))
        for sample in samples:
            path = folder / "images" / f"{sample.id}.png"
            if not path.is_file():
                generator = torch.Generator("cpu").manual_seed(sample.seed)
                image = pipe(
                    sample.prompt_original,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=generator,
                    height=backbone.resolution,
                    width=backbone.resolution,
                ).images[0]
                atomic_write_bytes(path, png_bytes(image))
            sample.original_image = str(path)
            mask = previous.get(sample.id, {}).get("gt_mask")
            sample.gt_mask = str(folder / mask) if mask else ""
            progress.advance(task)
    source = {
        "backbone": backbone_name,
        "fingerprint": backbone.fingerprint,
        "steps": steps,
        "guidance": guidance,
        "resolution": backbone.resolution,
        "scheduler": type(backbone.components["scheduler"]).__name__,
        "generator": "torch.Generator('cpu').manual_seed(sample.seed)",
        "prompt": "prompt_original",
        "random_weights": backbone.random_weights,
    }
    definition = {
        "name": f"{suite.name}@{short}",
        "version": suite.version,
        "description": f"{suite.description} Images built by {backbone_name}.",
        "synthetic_source": source,
    }
    readme = (
        f"# {definition['name']}\n\nSource images of `{suite.name}` built by "
        f"`partedit-bench data build-synth --backbone {backbone_name}`.\n\n"
        f"Settings: `{json.dumps(source)}`\n\nGT masks: attach with "
        f"`partedit-bench data import-masks {folder} SOURCE`.\n"
    )
    suite_file = write_files_suite(folder, definition, samples, readme)
    return suite_file, [s.id for s in samples if not s.gt_mask]


def _is_built(folder: Path) -> bool:
    """A folder build-synth made (its suite records the backbone that built it)."""
    import yaml

    try:
        definition = yaml.safe_load((folder / "suite.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(definition, dict) and "synthetic_source" in definition
