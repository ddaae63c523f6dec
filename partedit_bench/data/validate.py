"""`data validate`: every file, mask and text field of a suite, all problems at once."""

from __future__ import annotations

from pathlib import Path

from partedit_bench.data.schema import Sample, load_image, load_mask
from partedit_bench.data.suites import load_suite, read_definition
from partedit_bench.errors import UserError


def validate_suite(name_or_path: str) -> tuple[int, list[str]]:
    """Checks a suite and returns (samples, every problem found); it does not stop at the first."""
    from partedit_bench.data.suites import available_suites

    if name_or_path not in available_suites() and not Path(name_or_path).exists():
        load_suite(name_or_path)  # the one-line "unknown suite" error, with suggestions
    problems: list[str] = []
    try:
        suite = load_suite(name_or_path)
    except UserError as exc:
        problems.append(str(exc))
        return 0, problems + _entry_problems(name_or_path)
    prompts_only = suite.definition.get("generator", {}).get("type") == "prompt-config"
    for sample in suite.samples:
        where = f"sample {sample.id}"
        if prompts_only:  # images are built per backbone by build-synth; check the text
            problems += _text_problems(sample, where)
            continue
        if not sample.original_image:
            problems.append(f"{where}: no source image (build it: partedit-bench data build-synth)")
            continue
        try:
            image = load_image(sample.original_image)
        except UserError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if not sample.gt_mask:
            problems.append(f"{where}: no GT mask (attach one: partedit-bench data import-masks)")
        else:
            try:
                mask = load_mask(sample.gt_mask, image.size)
                if not mask.any():
                    problems.append(f"{where}: GT mask {sample.gt_mask} is empty")
                elif mask.all():
                    problems.append(f"{where}: GT mask {sample.gt_mask} covers the whole image")
            except UserError as exc:
                problems.append(f"{where}: {exc}")
        if suite.definition.get("role") != "token-training":
            problems += _text_problems(sample, where)
        for key, value in sample.extra.items():
            if key in ("gt_edited_image", "partedit") and value:
                try:
                    if load_image(value).size != image.size:
                        problems.append(f"{where}: {key} size differs from the source image")
                except UserError as exc:
                    problems.append(f"{where}: {exc}")
    return len(suite.samples), problems


def _text_problems(sample: Sample, where: str) -> list[str]:
    problems = [
        f"{where}: empty field {key}"
        for key in ("prompt_original", "prompt_changed")
        if not getattr(sample, key)
    ]
    if sample.prompt_changed and f"<{sample.part_token}>" not in sample.prompt_changed:
        problems.append(f"{where}: prompt_changed lacks the part token <{sample.part_token}>")
    return problems


def _entry_problems(name_or_path: str) -> list[str]:
    """When a files suite fails to load, checks each of its entries to report them all."""
    from partedit_bench.data.suites import _read_jsonl, available_suites

    path = available_suites().get(name_or_path) or Path(name_or_path)
    if path.is_dir():
        path = path / "suite.yaml"
    try:
        definition = read_definition(path)
        entries = definition.get("samples")
        if entries is None and "samples_file" in definition:
            entries = _read_jsonl(Path(definition["_dir"]) / definition["samples_file"])
    except UserError:
        return []
    problems = []
    for i, entry in enumerate(entries or []):
        try:
            Sample.from_dict(entry, f"sample {i}")
        except UserError as exc:
            problems.append(str(exc))
    return problems[1:] if problems else []
