"""Every row of the README's "Reproduce the paper" table at toy scale, timed (`make paper-toy`).

Each step is the README's command on the PartWorld backbone (`partworld-sd`, trained here,
shipped) with fewer samples, steps and seeds, so that the whole reproduction runs on 2 CPU
cores; each must write the files its row names (a figure is opened as a PNG), so that none of
the commands rots. Writes `results/paper-toy/` (one folder per row) and `times.md` there: the
seconds each row took on this machine.

    .venv/bin/python benchmarks/paper_toy.py [--only ROW,ROW] [--list] [--output DIR]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOY = ["--backbone", "partworld-sd", "--limit", "3", "--set", "partedit.steps=10"]
TOKENS = ["--backbone", "partworld-sd", "--part", "car-body", "--steps", "60"]
SAMPLE = "pw0-00000"


def rows(out: Path) -> list[tuple[str, str, list[list[str]], list[str]]]:
    """(row, the paper's item, commands, files each must leave) in the README's order."""
    r = lambda name: str(out / name)  # noqa: E731
    return [
        ("table1", "Table 1", [
            ["run", *TOY, "--output", r("table1")],
            ["evaluate", r("table1")],
            ["report", r("table1")],
        ], ["table1/report/table.csv", "table1/report/plots/tradeoff.png"]),
        ("t_e", "Sec. 4.5.1, Fig. 8", [
            ["run", *TOY, "--methods", "partedit[t_e=0|5|10]", "--output", r("t_e")],
            ["report", r("t_e"), "--samples", SAMPLE],
        ], ["t_e/report/plots/sweep_partedit_t_e.png", "t_e/report/plots/qualitative.png"]),
        ("threshold", "Sec. 4.5.2, Fig. 9; App. N, Fig. 29", [
            ["run", *TOY, "--methods", "partedit[threshold=binary|otsu|adaptive]",
             "--output", r("threshold")],
            ["report", r("threshold"), "--samples", SAMPLE],
            ["maps", r("threshold"), f"partedit[steps=10,threshold=adaptive]/synth/{SAMPLE}__s0",
             "--output", r("threshold/fig29.png")],
        ], ["threshold/report/plots/sweep_partedit_threshold.png", "threshold/fig29.png"]),
        ("omega", "App. C, Fig. 14", [
            ["run", *TOY, "--methods", "partedit[omega=1|1.5|3]", "--output", r("omega")],
            ["report", r("omega"), "--samples", SAMPLE],
        ], ["omega/report/plots/sweep_partedit_omega.png", "omega/report/plots/qualitative.png"]),
        ("padding", "App. D, Fig. 15", [
            ["localize", *TOY, "--sources", "tokens[padding=bg|sot|eot|zero|context]",
             "--output", r("padding")],
        ], ["padding/localization.csv", "padding/figure27.png"]),
        ("layers", "App. E, Fig. 16", [
            ["token-study", "layers", *TOKENS, "--output", r("tokens")],
        ], ["tokens/token_layers.csv", "tokens/token_layers.png"]),
        ("images", "App. B, Fig. 13", [
            ["token-study", "images", *TOKENS, "--counts", "1,2,4,8", "--seeds", "3",
             "--output", r("tokens")],
        ], ["tokens/token_images.csv", "tokens/token_images.png"]),
        ("subsets", "App. J", [
            ["token-study", "subsets", *TOKENS, "--seeds", "5", "--output", r("tokens")],
        ], ["tokens/token_subsets.csv", "tokens/token_subsets.png"]),
        ("time", "App. Q", [
            ["token-study", "time", *TOKENS, "--layer-sets", "2,4,decoder,all",
             "--output", r("tokens")],
        ], ["tokens/token_time.csv", "tokens/token_time.png"]),
        ("multi", "App. M", [
            ["run", *TOY, "--suite", "partworld-multi", "--methods", "partedit",
             "--output", r("multi")],
            ["report", r("multi"), "--samples", "pwm0-00000"],
        ], ["multi/report/table.csv", "multi/report/plots/qualitative.png"]),
        ("table2", "Table 2 (localization)", [
            ["localize", *TOY, "--sources", "tokens,gt,tiny-grounded-sam,tiny-sam3",
             "--output", r("table2")],
        ], ["table2/localization.csv", "table2/figure27.png"]),
        ("study", "the user study", [
            ["userstudy", "export", r("table1"), "--pairs", "partedit[steps=10]:blended_latent",
             "--output", r("study")],
        ], ["study/site/index.html", "study/study_key.json"]),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "results" / "paper-toy"))
    parser.add_argument("--only", default=None, help="comma-separated rows")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    out = Path(args.output)
    table = rows(out)
    names = [name for name, *_ in table]
    chosen = args.only.split(",") if args.only else names
    unknown = [c for c in chosen if c not in names]
    if unknown:
        print(
            f"paper_toy: unknown row(s) {', '.join(unknown)} ({', '.join(names)})", file=sys.stderr
        )
        return 2
    cli = [sys.executable, "-m", "partedit_bench"]
    times = []
    for name, paper, commands, files in table:
        if name not in chosen:
            continue
        start = time.perf_counter()
        for command in commands:
            line = "partedit-bench " + shlex.join(command)
            print(f"[{name}] {line}", flush=True)
            if args.list:
                continue
            done = subprocess.run([*cli, *command, "--overwrite"] if _overwrites(command)
                                  else [*cli, *command], cwd=ROOT)  # fmt: skip
            if done.returncode != 0:
                print(f"paper_toy: {name} failed ({line})", file=sys.stderr)
                _write_times(out, names, times)
                return 1
        if args.list:
            continue
        seconds = time.perf_counter() - start
        for file in files:
            _check(out / file)
        times.append((name, paper, seconds))
        print(f"[{name}] {seconds:.0f} s", flush=True)
    _write_times(out, names, times)
    return 0


def _write_times(out: Path, names: list[str], times: list[tuple[str, str, float]]) -> None:
    """times.md: the rows timed now, and those timed earlier (`--only`) as they were."""
    if not times:
        return
    known = _read_times(out / "times.md")
    known.update({n: (p, f"{s:.0f}") for n, p, s in times})
    lines = ["| row | paper | seconds (2 CPU cores) |", "|---|---|---|"]
    lines += [f"| {n} | {known[n][0]} | {known[n][1]} |" for n in names if n in known]
    (out / "times.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _read_times(path: Path) -> dict[str, tuple[str, str]]:
    if not path.is_file():
        return {}
    cells = [line.strip("|").split("|") for line in path.read_text().splitlines()[2:]]
    return {c[0].strip(): (c[1].strip(), c[2].strip()) for c in cells if len(c) == 3}


def _overwrites(command: list[str]) -> bool:
    """Commands that refuse to replace their earlier results take --overwrite (a rerun; `run`:
    a run folder made by older code, whose configuration hash differs)."""
    return command[0] in ("run", "localize", "token-study", "maps", "userstudy")


def _check(path: Path) -> None:
    if not path.is_file():
        raise SystemExit(f"paper_toy: {path} was not written")
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            image.load()


if __name__ == "__main__":
    sys.exit(main())
