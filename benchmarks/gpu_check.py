"""The GPU check: the first thing to run wherever a GPU is at hand (`make gpu-check`).

With the real SDXL base 1.0 and SD 2.1 base architectures built from their configs with random
weights (`random-sdxl` at 1024 px, `random-sd21` at 512 px: no download, the same cost as the
real weights), in float16 on CUDA, it

1. trains a part token (50 steps, decoupled, the released code's recipe) on each backbone;
2. measures seconds per denoising step of plain CFG, PartEdit (2 paths) and the official
   3-path formulation, and their ratios (`benchmarks/partedit_speed.step_costs`);
3. runs one job of every method through the runner (`partedit-bench run` with
   `--check-tensors`: every tensor entering a model layer is checked for the backbone's device
   and dtype), with at most `--steps` denoising steps, and records each job's status, time,
   seconds per step and peak GPU memory;
4. records after every job which special checkpoints (ip2p, inpainting, Kontext) are resident
   and the GPU memory allocated: a run of several methods must hold one at a time;
5. then, for the DiT editors, builds FLUX.1-dev's and Qwen-Image-Edit's architectures
   (`random-flux` with its Kontext twin, `random-qwen-image`, in bfloat16: `--dit-dtype`) and
   runs parts 3-4 on them: the peak memory of `stable_flow`, `flux_kontext` and
   `qwen_image_edit` jobs at 1024 px.

It writes `gpu_check.json` and `gpu_check.md` (`--output`, default results/gpu_check) and
stops each part that would overrun `--budget` seconds (8 minutes for parts 1-4 on one H200 is
the target, about 2 more for part 5, estimated), recording it as skipped. Without CUDA it
exits with one line; `--dry` runs the same steps on the CPU with the tiny backbones and 2
steps, to check the script and its output.

    .venv/bin/python benchmarks/gpu_check.py [--output DIR] [--steps 20] [--budget 540]
    .venv/bin/python benchmarks/gpu_check.py --dry
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # (run as a script)

#: backbone -> image size of the check (their native sizes); the DiT backbones (FLUX.1-dev and
#: Qwen-Image-Edit's architectures) run only their methods, in --dit-dtype
REAL = {"random-sdxl": 1024, "random-sd21": 512, "random-flux": 1024, "random-qwen-image": 1024}
DRY = {"tiny-sdxl": 64, "tiny-sd": 64, "tiny-flux": 64, "tiny-qwen-image": 64}
DIT_FAMILIES = ("flux", "qwen-image")


#: what a method's step defaults cannot say: LEDITS++ warms up for 10 of SDXL's 100 steps (its
#: default is a count per family), null-text inversion with 5 inner steps instead of 10,
#: StableFlow inverts a real image in as many steps as it edits
SPEED: dict[str, Any] = {
    "ledits_pp": lambda steps: {"warmup": max(1, round(0.1 * steps))},
    "p2p": lambda steps: {"null_text_inner_steps": 5},
    "stable_flow": lambda steps: {"inversion_steps": steps},
}


def method_options(steps: int) -> dict[str, dict[str, Any]]:
    """Every registered method at `steps` steps (a method added later is in the check without
    a change here): its options counted in steps keep their fraction of its defaults
    (`EditMethod.step_options`: EF-DDPM skips 36 of 100, MasaCtrl starts at 4 of 50), and
    SPEED above."""
    from partedit_bench.api import METHOD_REGISTRY, resolve_method_class, with_step_counts

    options = {}
    for name in METHOD_REGISTRY:
        cls = resolve_method_class(name)
        fields = {f.name for f in dataclasses.fields(cls.Options)}
        chosen = with_step_counts(cls, {"steps": steps}) if "steps" in fields else {}
        options[name] = {**chosen, **(SPEED[name](steps) if name in SPEED else {})}
    return options


class Clock:
    def __init__(self, budget: float):
        self.start, self.budget = time.perf_counter(), budget

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, estimate: float) -> bool:
        return self.elapsed + estimate <= self.budget


def gib(n: float) -> float:
    return round(n / 2**30, 2)


def device_facts(device: str) -> dict[str, Any]:
    import diffusers
    import torch

    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu=props.name, gpu_memory_gib=gib(props.total_memory), cuda=torch.version.cuda
        )
    return facts


def allocated(device: str) -> float | None:
    import torch

    return gib(torch.cuda.memory_allocated(device)) if device.startswith("cuda") else None


def train_check_token(backbone: Any, steps: int, tokens: Path) -> dict[str, Any]:
    """Trains the token of the part the PartEdit job edits (the first sample of the partworld
    suite) on the backbone, from the suite's images of that part, and saves it where the job
    reads it."""
    from partedit_bench.data.suites import load_suite
    from partedit_bench.tokens import token_path
    from partedit_bench.tokens.training import TrainConfig, train_token

    suite = load_suite("partworld").samples
    part = suite[0].part_token
    samples = [s for s in suite if s.part_token == part]
    config = TrainConfig(steps=steps, images=4, heldout=2)
    result = train_token(backbone, part, samples, config)
    result.token.save(token_path(backbone.name, part, tokens))
    return {
        "part": part,
        "steps": steps,
        "seconds": round(result.seconds, 2),
        "loss": [round(result.losses[0], 4), round(result.losses[-1], 4)],
        "finite": all(v == v for v in result.losses),
    }


def run_methods(
    name: str, device: str, dtype: str, steps: int, tokens: Path | None, out: Path
) -> dict[str, Any]:
    """One job of every method through the runner, with the tensor check on; per job the
    record's status, times and peak memory, and what was resident after it."""
    import yaml

    from partedit_bench.config import RunConfig
    from partedit_bench.methods.specials import loaded_specials
    from partedit_bench.runner import Runner
    from partedit_bench.store import iter_records

    residency: list[dict[str, Any]] = []

    class Watched(Runner):
        def run_job(self, job: Any, *args: Any) -> str:
            status = super().run_job(job, *args)
            residency.append(
                {
                    "after": job.variant.name,
                    "specials": sorted(b.name for b in loaded_specials()),
                    "allocated_gib": allocated(device),
                }
            )
            return status

    config = out / f"methods-{name}.yaml"
    options = method_options(steps)
    if tokens is not None:
        options["partedit"]["tokens"] = str(tokens / name)
    config.write_text(yaml.safe_dump({"options": options}))
    root = out / f"run-{name}"
    cfg = RunConfig(
        methods="all",
        backbone=name,
        limit=1,
        output=str(root),
        device=device,
        dtype=dtype,
        method_config=str(config),
        check_tensors=True,
        recompute=True,
        overwrite=True,
    )
    runner = Watched(cfg)
    runner.run()
    after_run = allocated(device)
    jobs = []
    for path in sorted(iter_records(root)):
        record = json.loads(path.read_text())
        times = record.get("step_times") or []
        peak = (record.get("peak_memory") or {}).get("bytes")
        jobs.append(
            {
                "method": record["variant"],
                "status": record["status"],
                "error": record.get("error"),
                "traceback": record.get("traceback"),
                "wall_s": record.get("wall_time_s"),
                "steps_timed": len(times),
                "s_per_step": round(sum(times) / len(times), 4) if times else None,
                "peak_gib": gib(peak) if peak and device.startswith("cuda") else None,
            }
        )
    most = max((len(r["specials"]) for r in residency), default=0)
    return {
        "jobs": jobs,
        "residency": residency,
        "most_specials_resident_at_once": most,
        "every_special_resident_at_once": most > 1,
        "allocated_after_run_gib": after_run,
        "backbone_allocated_gib": runner_backbone_memory(runner),
    }


def runner_backbone_memory(runner: Any) -> float:
    import torch

    modules = [m for m in runner.backbone.components.values() if isinstance(m, torch.nn.Module)]
    return gib(sum(p.numel() * p.element_size() for m in modules for p in m.parameters()))


def check_backbone(
    name: str, size: int, args: argparse.Namespace, clock: Clock, out: Path
) -> dict[str, Any]:
    import torch

    from benchmarks.partedit_speed import step_costs
    from partedit_bench.engine.backbones import load_backbone
    from partedit_bench.engine.registry import BACKBONES

    entry: dict[str, Any] = {"backbone": name, "size": size, "parts": {}}
    dit = BACKBONES[name].family in DIT_FAMILIES
    dtype = args.dit_dtype if dit else args.dtype
    if dit:  # no UNet: no part token, no PartEdit step costs; the backbone is the run's own
        entry["dtype"] = dtype
        entry["parts"]["methods"] = guarded(
            clock, 150, lambda: run_methods(name, args.device, dtype, args.steps, None, out)
        )
        return entry
    start = time.perf_counter()
    backbone = load_backbone(name, args.device, dtype)
    backbone.resolution = size
    entry["load_s"] = round(time.perf_counter() - start, 2)
    entry["dtype"] = str(backbone.dtype).split(".")[-1]
    entry["allocated_after_load_gib"] = allocated(args.device)
    tokens = out / "tokens"
    parts = [
        ("token_training", 60, partial(train_check_token, backbone, args.token_steps, tokens)),
        ("speed", 60, partial(step_costs, backbone.unet, size, args.speed_steps, report=False)),
    ]
    for part, estimate, action in parts:
        entry["parts"][part] = guarded(clock, estimate, action)
    del parts, backbone  # the run loads its own copy
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    entry["parts"]["methods"] = guarded(
        clock,
        120,
        lambda: run_methods(name, args.device, dtype, args.steps, tokens, out),
    )
    return entry


def guarded(clock: Clock, estimate: float, action: Any) -> dict[str, Any]:
    """Runs one part of the check unless it would overrun the budget; an exception is
    recorded, not raised (the other parts still run)."""
    if not clock.allows(estimate):
        return {"status": "skipped", "reason": f"time budget ({clock.budget:.0f} s) spent"}
    start = time.perf_counter()
    try:
        result = action()
        status = "ok"
    except Exception as exc:  # recorded in the report
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        status = "failed"
    return {"status": status, "seconds": round(time.perf_counter() - start, 2), **result}


def markdown(report: dict[str, Any]) -> str:
    facts = report["facts"]
    lines = [
        "# GPU check",
        "",
        f"{facts.get('gpu', facts['device'])}, torch {facts['torch']}, diffusers "
        f"{facts['diffusers']}, {report['dtype']}; {report['elapsed_s']:.0f} s in all"
        + (" (dry run on the CPU with the tiny backbones)" if report["dry"] else ""),
        "",
        "Random weights at the real architectures' size: times and memory are those of the real "
        "checkpoints; the images mean nothing.",
    ]
    for entry in report["backbones"]:
        parts = entry["parts"]
        lines += ["", f"## {entry['backbone']} at {entry['size']} px", ""]
        if "load_s" in entry:
            lines.append(
                f"Loaded in {entry['load_s']} s"
                + (
                    f", {entry['allocated_after_load_gib']} GiB allocated"
                    if entry["allocated_after_load_gib"] is not None
                    else ""
                )
                + "."
            )
        else:
            lines.append(f"A DiT backbone in {entry['dtype']}: its methods only (no UNet).")
        token = parts.get("token_training", {"status": "n/a"})
        if "token_training" in parts:
            lines += ["", "Token training: " + _status_line(token)]
        if token["status"] == "ok":
            lines[-1] += (
                f" {token['steps']} steps in {token['seconds']} s, loss "
                f"{token['loss'][0]} -> {token['loss'][1]}"
            )
        speed = parts.get("speed", {"status": "n/a"})
        if "speed" in parts:
            lines += ["", "Seconds per denoising step: " + _status_line(speed)]
        if speed["status"] == "ok":
            lines += ["", "| path | s/step |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in speed["seconds_per_step"].items()]
            lines += ["", "| ratio | value |", "|---|---|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in speed["ratios"].items()]
        methods = parts["methods"]
        failed = [j for j in methods.get("jobs", []) if j["status"] == "failed"]
        lines += [
            "",
            "One job of every method: "
            + (f"**{len(failed)} failed**." if failed else _status_line(methods)),
        ]
        if methods["status"] == "ok":
            lines += [
                "",
                "| method | status | wall s | s/step | peak GiB |",
                "|---|---|---|---|---|",
            ]
            for job in methods["jobs"]:
                lines.append(
                    f"| {job['method']} | {job['status']} | {job['wall_s']} | "
                    f"{_num(job['s_per_step'])} | {_num(job['peak_gib'])} |"
                )
            for job in failed:
                lines += ["", f"- {job['method']} failed: {job['error']}"]
                if job.get("traceback"):
                    lines += ["", "```", job["traceback"], "```"]
            held = methods["most_specials_resident_at_once"]
            every = methods["every_special_resident_at_once"]
            lines += [
                "",
                f"Special checkpoints resident at once: at most {held} "
                f"({'every one at once' if every else 'one at a time'}); "
                f"allocated after the run: {_num(methods['allocated_after_run_gib'])} GiB "
                f"(the backbone's weights: {methods['backbone_allocated_gib']} GiB).",
            ]
    return "\n".join(lines) + "\n"


def _status_line(part: dict[str, Any]) -> str:
    if part["status"] == "ok":
        return "ok."
    return f"**{part['status']}**: {part.get('reason') or part.get('error')}."


def _num(value: Any) -> str:
    return "n/a" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="results/gpu_check")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per method job")
    parser.add_argument("--token-steps", type=int, default=50)
    parser.add_argument("--speed-steps", type=int, default=5)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds in all")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--dit-dtype", default="bfloat16", help="the FLUX and Qwen-Image dtype")
    parser.add_argument("--backbones", default=None, help="comma-separated subset")
    parser.add_argument("--dry", action="store_true", help="the tiny backbones on the CPU, 2 steps")
    args = parser.parse_args(argv)
    import torch

    sizes = dict(REAL)
    if args.dry:
        sizes = dict(DRY)
        args.device, args.dtype, args.dit_dtype = "cpu", "float32", "float32"
        args.steps, args.token_steps, args.speed_steps = 2, 2, 1
    elif not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a "
            "machine with a GPU, or pass --dry to check the script on the CPU",
            file=sys.stderr,
        )
        return 2
    if args.backbones:
        sizes = {b: sizes[b] for b in args.backbones.split(",")}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget)
    report: dict[str, Any] = {
        "dry": args.dry,
        "dtype": args.dtype,
        "steps": args.steps,
        "facts": device_facts(args.device),
        "backbones": [],
    }
    for name, size in sizes.items():
        print(f"gpu_check: {name} at {size} px ({clock.elapsed:.0f} s so far)", flush=True)
        report["backbones"].append(check_backbone(name, size, args, clock, out))
    report["elapsed_s"] = round(clock.elapsed, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"gpu_check: wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    failed = [
        f"{e['backbone']} {part}"
        for e in report["backbones"]
        for part, result in e["parts"].items()
        if result["status"] == "failed"
        or any(j["status"] == "failed" for j in result.get("jobs", []))
    ]
    if failed:
        print(f"gpu_check: failures in {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
