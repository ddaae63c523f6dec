"""The evaluate stage: job records -> metric rows, cached per (job, metric-group manifest).

Metric rows live beside the job records as `<sample-id>__s<seed>.<group>-<manifest-hash>
.metrics.json`; `metrics_manifest.json` in the run folder names the current manifest of each
group, or why a group is unavailable (e.g. no Alpha-CLIP checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from partedit_bench.data.schema import Sample, load_image, load_mask
from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, json_bytes, remove_stale_temps, stable_hash
from partedit_bench.metrics import (
    GROUPS,
    METRICS,
    TEXT_RULE,
    ScoredEdit,
    foreground_text,
    pixel_manifest,
)
from partedit_bench.store import (
    MANIFEST_FILE,
    JobRecord,
    check_outputs,
    files_digest,
    iter_records,
    load_run,
    metric_path,
    read_json,
    read_record,
    suite_samples,
)


def to_float(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


#: What `evaluate` computes when no metric or group is named: the paper's metrics and what
#: runs without weights (the other benchmarks' network groups only when asked for).
DEFAULT_GROUPS = ("pixel", "aclip")


def groups_for(metrics: Iterable[str] | None, groups: Iterable[str] | None = None) -> list[str]:
    """The groups that compute `metrics` and `groups` (checked: one line for an unknown one),
    or the default ones."""
    from partedit_bench.errors import did_you_mean

    metrics, groups = list(metrics or []), list(groups or [])
    for name in groups:
        if name not in GROUPS:
            raise UserError(f"unknown metric group '{name}'{did_you_mean(name, GROUPS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric '{unknown[0]}'{did_you_mean(unknown[0], METRICS)}")
    if not metrics and not groups:
        return list(DEFAULT_GROUPS)
    return sorted({METRICS[m].group for m in metrics} | set(groups), key=GROUPS.index)


class NetworkGroup:
    """The `pie` or `magicbrush` metrics of one edit (networks.py), with their manifest."""

    def __init__(self, group: str, nets: Any):
        from partedit_bench.metrics import networks

        self.group, self.nets = group, nets
        names = networks.PIE_METRICS if group == "pie" else networks.MAGICBRUSH_METRICS
        self.manifest = {
            "group": group,
            "version": 1,
            "networks": nets.identity,
            "random_weights": nets.random_weights,
            "metrics": {n: METRICS[n].description for n in names},
            "text_rule": TEXT_RULE,
            "preprocess": networks.PREPROCESS,
            "images": "8-bit values of the stored images; networks in float32 on the CPU "
            "or the evaluation's device",
        }

    def __call__(self, e: ScoredEdit) -> dict[str, float]:
        from partedit_bench.metrics import networks as N

        nan = float("nan")
        if self.group == "pie":
            edited_part = e.mask.any()
            return {
                "structure_distance": N.structure_distance(self.nets.dino_b8, e.source, e.edited),
                "lpips_bg": N.lpips_bg(self.nets.lpips, e.source, e.edited, e.mask),
                "clip_whole": N.clip_score(self.nets.clip_l14, e.edited, e.fg_text),
                "clip_edited": N.clip_score(self.nets.clip_l14, e.edited, e.fg_text, e.mask)
                if edited_part
                else nan,
            }
        target = e.target
        return {
            "clip_i": nan if target is None else N.clip_i(self.nets.clip_b32, e.edited, target),
            "clip_t": N.clip_t(self.nets.clip_b32, e.edited, e.fg_text),
            "dino_i": nan if target is None else N.dino_i(self.nets.dino_s16, e.edited, target),
        }


class AlphaClipGroup:
    """Computes aclip_fg, aclip_bg and aclip_avg for one edit."""

    def __init__(self, scorer: Any, variant: str):
        self.scorer = scorer
        self.manifest = {
            "group": "aclip",
            "version": 1,
            "model": scorer.identity,
            "variant": variant,
            "text_rule": TEXT_RULE,
            "preprocess": "bicubic resize of the image and bilinear resize of the alpha mask to "
            "the tower's size (no crop); CLIP mean/std; alpha Normalize(0.5, 0.26)",
            "aclip_fg": "cosine(AlphaCLIP(edited, alpha=M), CLIP_text(T_fg))",
            "aclip_bg": "cosine(AlphaCLIP(source, alpha=B), AlphaCLIP(edited, alpha=B))",
        }

    def __call__(self, e: ScoredEdit) -> dict[str, float]:
        m = e.mask.astype(np.float32)
        if not m.any() or m.all():
            return {"aclip_fg": float("nan"), "aclip_bg": float("nan"), "aclip_avg": float("nan")}
        feats = self.scorer.encode_image(
            np.stack([e.edited, e.source, e.edited]), np.stack([m, 1 - m, 1 - m])
        )
        text = self.scorer.encode_text([e.fg_text])[0]
        fg = float(feats[0] @ text)
        bg = float(feats[1] @ feats[2])
        return {"aclip_fg": fg, "aclip_bg": bg, "aclip_avg": (fg + bg) / 2}


def pixel_group(e: ScoredEdit) -> dict[str, float]:
    return {
        m.name: float(m.compute(e))
        for m in METRICS.values()
        if m.group == "pixel" and m.compute is not None
    }


def scored_edit(sample: Sample, record_path: Path, record: JobRecord) -> ScoredEdit:
    source_img = load_image(sample.original_image)
    edited = load_image(record_path.parent / str(record.image))
    if edited.size != source_img.size:
        raise UserError(
            f"{record_path}: edited image {edited.size} differs from its source {source_img.size}"
        )
    mask = load_mask(sample.gt_mask, source_img.size)
    target_path = sample.extra.get("gt_edited_image")
    predicted = None
    if record.predicted_mask:
        predicted = (
            np.asarray(
                Image.open(record_path.parent / record.predicted_mask).convert("L"),
                dtype=np.float64,
            )
            / 255.0
        )
    return ScoredEdit(
        source=to_float(source_img),
        edited=to_float(edited),
        mask=mask,
        target=to_float(load_image(target_path)) if target_path else None,
        predicted_mask=predicted,
        fg_text=foreground_text(sample.prompt_changed or sample.prompt_original, sample.part),
        instruction=(sample.instructp2p_edit or [""])[0],
        part=sample.part or sample.part_token,
    )


def evaluate_run(
    root: Path,
    metrics: list[str] | None = None,
    alpha_clip: str | None = None,
    clip: str | None = None,
    variant: str | None = None,
    device: str = "cpu",
    only: set[Path] | None = None,
    console: Any = None,
    groups: list[str] | None = None,
    networks: str = "real",
    judge: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores every complete job of a run folder (or the records in `only`): the groups of
    `metrics` and `groups` (default: pixel and aclip); `networks`: `tiny` gives the pie and
    magicbrush groups random-weight twins (tests); `judge`: `load_judge`'s arguments and
    `mode` (vie, part, both)."""
    from partedit_bench.metrics.alpha_clip import DEFAULT_VARIANT, AlphaCLIP

    if only is None:
        remove_stale_temps(root)  # of a killed evaluation

    groups = groups_for(metrics, groups)
    info = load_run(root)
    manifest_path = root / MANIFEST_FILE
    manifests: dict[str, Any] = read_json(manifest_path) or {}
    computers: dict[str, Any] = {}
    if "pixel" in groups:
        computers["pixel"] = (pixel_group, pixel_manifest())
    if "aclip" in groups:
        variant = variant or DEFAULT_VARIANT
        try:
            scorer = AlphaCLIP.load(alpha_clip, clip, variant, device)
            group = AlphaClipGroup(scorer, variant)
            computers["aclip"] = (group, group.manifest)
        except UserError as exc:
            if alpha_clip or (metrics and any(METRICS[m].group == "aclip" for m in metrics)):
                raise
            if not manifests.get("aclip", {}).get("available"):
                manifests["aclip"] = {"available": False, "reason": str(exc)}
    wanted = [g for g in groups if g in ("pie", "magicbrush")]
    if wanted:
        from partedit_bench.metrics.networks import load_networks

        nets = load_networks(wanted, networks, device)  # one line when weights are missing
        for name in wanted:
            network_group = NetworkGroup(name, nets)
            computers[name] = (network_group, network_group.manifest)
    if "judge" in groups:
        from partedit_bench.judge import JudgeGroup
        from partedit_bench.judge.backends import load_judge

        options = dict(judge or {})
        mode = options.pop("mode", "both")
        judge_group = JudgeGroup(load_judge(**options, device=device), mode)
        computers["judge"] = (judge_group, judge_group.manifest)
    for name, (_, manifest) in computers.items():
        manifests[name] = {"available": True, "hash": stable_hash(manifest), "manifest": manifest}
    atomic_write_bytes(manifest_path, json_bytes(manifests))

    samples = suite_samples(info)
    counts: dict[str, Any] = {"computed": 0, "cached": 0, "jobs": 0}
    paths = [p for p in iter_records(root) if only is None or p in only]
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluate", total=len(paths))
        for path in paths:
            progress.advance(task)
            record = read_record(path)
            if not record or record.status != "ok":
                continue
            counts["jobs"] += 1
            check_outputs(path, record)  # never a score of bytes the record did not write
            digest = files_digest(record)
            todo = []
            for name in computers:
                out = metric_path(path, name, manifests[name]["hash"])
                cached = read_json(out)
                if (
                    cached
                    and cached.get("job_hash") == record.job_hash
                    and cached.get("files") == digest
                ):
                    counts["cached"] += 1
                else:
                    todo.append((name, out))
            if not todo:
                continue
            sample = samples.get(record.sample_id)
            if sample is None:
                raise UserError(f"{path}: sample {record.sample_id} is not in the run's suite")
            edit = scored_edit(sample, path, record)
            for name, out in todo:
                values = computers[name][0](edit)
                atomic_write_bytes(
                    out,
                    json_bytes(
                        {
                            "job_hash": record.job_hash,
                            "files": digest,
                            "group": name,
                            "manifest_hash": manifests[name]["hash"],
                            "values": {k: (None if np.isnan(v) else v) for k, v in values.items()},
                        }
                    ),
                )
                counts["computed"] += 1
    # the groups this run has no values of, and why (the command says so: a table's n/a
    # columns are explained where they are made)
    counts["unavailable"] = {
        name: str(m.get("reason", "")) for name, m in manifests.items() if not m.get("available")
    }
    return counts


def score_files(
    source: str,
    edited: str,
    mask: str,
    target: str | None = None,
    predicted_mask: str | None = None,
    prompt: str = "",
    part: str = "",
    alpha_clip: str | None = None,
    clip: str | None = None,
    variant: str | None = None,
    device: str = "cpu",
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every available metric of one edit given as files (what `partedit-bench score` prints):
    the values (None when not available) and, for each missing one, why.

    Raises:
        UserError: an unreadable input, or inputs of different sizes (an edit of another size
            is not scored, as `evaluate` does not).
    """
    import math

    from partedit_bench.data.schema import load_image, load_mask

    src, out = load_image(source), load_image(edited)
    if out.size != src.size:  # as evaluate: an edit of another size is not scored
        raise UserError(
            f"{edited} is {out.size[0]}x{out.size[1]} but {source} is "
            f"{src.size[0]}x{src.size[1]}; resize the edit first if that is intended"
        )
    part_mask = load_mask(mask, src.size)
    true_edit = load_image(target) if target else None
    if true_edit is not None and true_edit.size != src.size:
        raise UserError(f"--target {target} is {true_edit.size}, not {src.size}")
    soft = None
    if predicted_mask:  # a soft mask: gray levels / 255, at the source's size
        try:
            with Image.open(predicted_mask) as img:
                gray = img.convert("L")
        except OSError as exc:
            raise UserError(f"--predicted-mask {predicted_mask}: unreadable ({exc})") from exc
        if gray.size != src.size:
            raise UserError(f"--predicted-mask {predicted_mask} is {gray.size}, not {src.size}")
        soft = np.asarray(gray, np.float64) / 255
    edit = ScoredEdit(
        to_float(src),
        to_float(out),
        part_mask,
        target=None if true_edit is None else to_float(true_edit),
        predicted_mask=soft,
        fg_text=foreground_text(prompt, part),
    )
    values: dict[str, float | None] = dict(pixel_group(edit))
    reason = "aclip_* need --prompt"
    if prompt:
        from partedit_bench.metrics.alpha_clip import DEFAULT_VARIANT, AlphaCLIP

        chosen = variant or DEFAULT_VARIANT
        try:
            scorer = AlphaCLIP.load(alpha_clip, clip, chosen, device)
            values.update(AlphaClipGroup(scorer, chosen)(edit))
        except UserError as exc:
            if alpha_clip:
                raise
            reason = str(exc)
    for name in METRICS:
        values.setdefault(name, None)
    clean = {k: (None if v is None or math.isnan(v) else v) for k, v in values.items()}
    why = {"mask_iou": "needs --predicted-mask", "psnr_fg_gt": "needs --target"}
    missing = {
        k: (reason if k.startswith("aclip") else why.get(k)) or "undefined for this input"
        for k, v in clean.items()
        if v is None
    }
    return clean, missing
