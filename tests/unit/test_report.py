"""evaluate / report / score / import-edits end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from partedit_bench.cli import main
from partedit_bench.data.suites import load_suite
from partedit_bench.report import bootstrap_ci
from tests.helpers import IDENTITY_RUN


def overall(run_dir, variant):
    table = pd.read_csv(run_dir / "report" / "table.csv")
    rows = table[(table.part == "all") & (table.variant == variant)]
    return rows.set_index("metric")


def test_identity_report_has_the_fixed_points(tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--limit",
                "4",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    assert main(["report", str(run)]) == 0
    rows = overall(run, "identity")
    assert rows.loc["psnr_bg", "mean"] == pytest.approx(100.0)
    assert rows.loc["ssim_bg", "mean"] == pytest.approx(1.0)
    assert rows.loc["leakage", "mean"] == 0.0 and rows.loc["edit_strength", "mean"] == 0.0
    assert rows.loc["psnr_bg", "n"] == 4 and rows.loc["psnr_bg", "failed"] == 0
    assert math.isnan(rows.loc["aclip_fg", "mean"])
    md = (run / "report" / "table.md").read_text()
    assert "random weights: checks the plumbing, not the methods" in md
    assert "psnr_bg ↑" in md and "leakage ↓" in md and "## Per part" in md
    tex = (run / "report" / "table.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex


def noisy_edits(folder, samples, amount):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for sample in samples:
        pixels = np.asarray(Image.open(sample.original_image).convert("RGB")).astype(int)
        noisy = np.clip(pixels + rng.integers(-amount, amount + 1, pixels.shape), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{sample.id}.png")


def test_imported_rows_bold_best_and_multi_run_blocks(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--limit",
                "4",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    samples = load_suite("partworld").samples[:4]
    noisy_edits(tmp_path / "edits", samples, 20)
    assert (
        main(
            [
                "import-edits",
                str(tmp_path / "edits"),
                "--suite",
                "partworld",
                "--name",
                "noisy",
                "--output",
                str(run),
                "--uses-gt-mask",
            ]
        )
        == 0
    )
    for name, sigma in (("mild", 5), ("strong", 40)):  # two methods compared
        noisy_edits(tmp_path / name, samples, sigma)
        assert main(["import-edits", str(tmp_path / name), "--suite", "partworld",
                     "--name", name, "--output", str(run)]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--metrics", "psnr_bg"]) == 0
    assert main(["report", str(run)]) == 0
    noisy = overall(run, "noisy†")
    assert noisy.loc["psnr_bg", "n"] == 4 and 20 < noisy.loc["psnr_bg", "mean"] < 40
    tex = (run / "report" / "table.tex").read_text()
    line = {n: next(x for x in tex.splitlines() if x.startswith(n)) for n in
            ("identity", "noisy", "mild", "strong")}  # fmt: skip
    assert "$^\\dagger$" in line["noisy"]
    header = next(x for x in tex.splitlines() if "psnr\\_bg" in x).split("&")
    psnr = next(i for i, cell in enumerate(header) if "psnr\\_bg" in cell)
    # the best psnr_bg among the methods compared: mild, not identity's 100 dB nor a † row
    assert "\\bfseries" in line["mild"].split("&")[psnr]
    assert "\\bfseries" not in line["strong"].split("&")[psnr]
    for reference in ("identity", "noisy"):  # no column of theirs, anywhere
        assert "\\bfseries" not in line[reference], line[reference]
    # a second run folder becomes a second block of the same table
    other = tmp_path / "other"
    assert (
        main(
            [
                "run",
                "--methods",
                "identity",
                "--limit",
                "2",
                "--backbone",
                "tiny-sdxl",
                "--output",
                str(other),
            ]
        )
        == 0
    )
    assert main(["report", str(run), str(other), "--output", str(tmp_path / "both")]) == 0
    both = pd.read_csv(tmp_path / "both" / "table.csv")
    assert set(both.block) == {"synth (tiny-sd)", "synth (tiny-sdxl)"}


def test_empty_mask_rows_are_counted_and_named(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(suite / "a.png")
    mask = np.zeros((32, 32), np.uint8)
    Image.fromarray(mask).save(suite / "empty.png")
    mask[8:16, 8:16] = 255
    Image.fromarray(mask).save(suite / "part.png")
    (suite / "suite.yaml").write_text(
        "name: edge\nversion: 1\nsamples:\n"
        "  - {id: s1, split: real, class_name: cat, part: head, part_token: animal-head,"
        " original_image: a.png, gt_mask: part.png}\n"
        "  - {id: s2, split: real, class_name: cat, part: head, part_token: animal-head,"
        " original_image: a.png, gt_mask: empty.png}\n"
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                *IDENTITY_RUN,
                "--suite",
                str(suite / "suite.yaml"),
                "--output",
                str(run),
            ]
        )
        == 0
    )
    rows = overall(run, "identity")
    assert rows.loc["psnr_bg", "n"] == 2
    assert rows.loc["edit_strength", "n"] == 1 and rows.loc["edit_strength", "excluded_nan"] == 1
    assert rows.loc["edit_strength", "excluded_samples"] == "s2"
    md = (run / "report" / "table.md").read_text()
    assert "edit_strength: 1 sample(s) excluded as NaN (s2)" in md


def test_score_json_on_hand_made_images(tmp_path, capsys):
    source = np.zeros((16, 16, 3), np.uint8)
    edited = np.full((16, 16, 3), 51, np.uint8)  # background moved by 0.2
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    edited[4:12, 4:12] = 255  # the part moved by 1.0
    for name, array in (("s.png", source), ("e.png", edited), ("m.png", mask)):
        Image.fromarray(array).save(tmp_path / name)
    capsys.readouterr()
    assert (
        main(
            [
                "score",
                str(tmp_path / "s.png"),
                str(tmp_path / "e.png"),
                str(tmp_path / "m.png"),
                "--json",
            ]
        )
        == 0
    )
    values = json.loads(capsys.readouterr().out)
    assert values["psnr_bg"] == pytest.approx(10 * math.log10(1 / 0.04))
    assert values["leakage"] == pytest.approx(0.2) and values["edit_strength"] == pytest.approx(1.0)
    assert values["ssim_bg"] < 1 and values["aclip_fg"] is None and values["mask_iou"] is None
    assert values["not_available"]["aclip_fg"] == "aclip_* need --prompt"  # and why
    assert values["not_available"]["mask_iou"] == "needs --predicted-mask"
    assert (
        main(
            [
                "score",
                str(tmp_path / "s.png"),
                str(tmp_path / "s.png"),
                str(tmp_path / "m.png"),
                "--json",
            ]
        )
        == 0
    )
    same = json.loads(capsys.readouterr().out)
    assert same["psnr_bg"] == pytest.approx(100.0) and same["ssim_bg"] == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_mean():
    rng = np.random.default_rng(1)
    values = rng.normal(5, 1, 200)
    low, high = bootstrap_ci(values, np.random.default_rng(0))
    assert low < values.mean() < high
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # normal approximation
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)
    assert all(math.isnan(v) for v in bootstrap_ci(values[:1], np.random.default_rng(0)))


def test_evaluate_and_report_refuse_bad_folders(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--metrics", "psnr"]) == 2
    assert "unknown metric 'psnr' (did you mean: psnr_bg" in capsys.readouterr().err


def test_report_draws_its_plots_from_the_table(tmp_path):
    """report/plots/: the trade-off scatter, per-part bars and, for a grid, each metric against
    the swept value; what each figure draws is the table's numbers; the gallery links them."""
    import pandas as pd

    from partedit_bench.plots import series

    out = tmp_path / "run"
    slow = "tests.helpers:SlowIdentity"
    methods = f"identity,{slow}[delay_s=0|0.001]"
    args = ["run", "--backbone", "tiny-sd", "--methods", methods, "--limit", "3"]
    assert main([*args, "--output", str(out)]) == 0
    # a second row that edits: an imported edit (its background differs from the source)
    edits = tmp_path / "edits"
    edits.mkdir()
    from PIL import Image

    from partedit_bench.data.suites import load_suite

    for sample in load_suite("partworld").samples[:3]:
        Image.open(sample.original_image).convert("RGB").rotate(90).save(edits / f"{sample.id}.png")
    assert main(["import-edits", str(edits), "--suite", "partworld", "--name", "rot",
                 "--output", str(out)]) == 0  # fmt: skip
    assert main(["evaluate", str(out)]) == 0 and main(["report", str(out)]) == 0
    plots = out / "report" / "plots"
    names = sorted(p.name for p in plots.iterdir())
    sweep = "sweep_SlowIdentity_delay_s"  # variant names drop the module path
    for stem in ("tradeoff", "parts_psnr_bg", "parts_edit_strength", sweep):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names, names
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "report" / "table.csv")
    overall = table[table.part == "all"]
    info = json.loads((out / "run.json").read_text())
    drawn = series(table, info["grids"])
    psnr = overall[overall.metric == "psnr_bg"].set_index("variant")["mean"]
    points = {p["label"]: p["y"] for p in drawn["tradeoff"]["points"]}
    assert points == {"rot": psnr["rot"]}  # no-edit rows (100 dB) are left out
    lines = drawn[sweep]["lines"]["psnr_bg"]
    (values,) = lines.values()
    assert [v[0] for v in values] == [0, 0.001]
    assert [v[1] for v in values] == [
        psnr["SlowIdentity[delay_s=0]"],
        psnr["SlowIdentity[delay_s=0.001]"],
    ]
    page = (out / "report" / "gallery.html").read_text()
    assert "plots/tradeoff.png" in page


def test_report_draws_chosen_samples_side_by_side(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "2", "--output", str(out)]) == 0
    assert main(["report", str(out), "--samples", "pw0-00001,pw0-00000"]) == 0
    png = out / "report" / "plots" / "qualitative.png"
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 0
    capsys.readouterr()
    assert main(["report", str(out), "--samples", "pw0-0000"]) == 2
    assert "no sample 'pw0-0000'" in capsys.readouterr().err


def test_a_line_plot_over_a_categorical_sweep_is_one_line(tmp_path, capsys):
    """`--sweep-plot line` draws each swept option against its value: a non-numeric option is
    refused before anything is written; `auto` and `bar` draw it as bars."""
    from partedit_bench.plots import series

    out = tmp_path / "run"
    slow = "tests.helpers:SlowIdentity[threshold=otsu|binary]"
    assert main(["run", "--backbone", "tiny-sd", "--methods", slow, "--limit", "2",
                 "--output", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["report", str(out), "--sweep-plot", "line"]) == 2
    err = capsys.readouterr().err.strip()
    assert "option 'threshold' is not numeric (otsu, binary)" in err and "\n" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["report", str(out), "--sweep-plot", "bar"]) == 0
    assert (out / "report" / "plots" / "sweep_SlowIdentity_threshold.png").is_file()
    import pandas as pd

    table = pd.read_csv(out / "report" / "table.csv")
    info = json.loads((out / "run.json").read_text())
    drawn = series(table, info["grids"])["sweep_SlowIdentity_threshold"]
    assert drawn["numeric"] is False and drawn["values"] == ["otsu", "binary"]


def test_tables_show_the_methods_that_ran_and_the_columns_with_values(tmp_path):
    """A method skipped on this backbone (ip2p: partworld-sd has no instruction-tuned model) and
    the Alpha-CLIP columns without a checkpoint are notes in table.md/.tex, not rows and columns
    of n/a; table.csv keeps them."""
    import pandas as pd

    out = tmp_path / "run"
    args = ["run", "--methods", "identity,ip2p", "--backbone", "partworld-sd", "--limit", "1"]
    assert main([*args, "--output", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    md = (out / "report" / "table.md").read_text()
    tex = (out / "report" / "table.tex").read_text()
    table_rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert not any(line.startswith("| ip2p") for line in table_rows)
    assert "aclip_fg" not in md.split("## Notes")[0] and "aclip" not in tex
    assert "ip2p" not in tex and "identity" in tex
    assert "no finished job, left out of the tables: ip2p" in md
    assert "no values (n/a), left out of the tables: aclip_fg, aclip_bg, aclip_avg" in md
    csv = pd.read_csv(out / "report" / "table.csv")
    assert "ip2p" in set(csv.variant) and "aclip_fg" in set(csv.metric)


def test_each_column_keeps_one_number_of_decimals_and_seconds_come_from_the_records(tmp_path):
    """The Markdown table shows every value of a column (and its interval's half-width) with
    the decimals of the column's typical value (3 significant digits), and `s / edit` is the
    mean of the ok records' wall times."""
    import re

    from partedit_bench.tables import column_decimals

    assert [column_decimals(v) for v in ([21.48, 26.3], [0.785, 0.9], [0.0433, 0.02], [])] == [
        1, 3, 4, 0,
    ]  # fmt: skip
    out = tmp_path / "run"
    slow = "tests.helpers:SlowIdentity"
    args = ["run", "--methods", f"identity,{slow}[delay_s=0.05]", "--backbone", "tiny-sd"]
    assert main([*args, "--limit", "3", "--output", str(out)]) == 0
    md = (out / "report" / "table.md").read_text().split("## Per part")[0]
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header, rows = (
        lines[0].strip("| ").split(" | "),
        [r.strip("| ").split(" | ") for r in lines[1:]],
    )
    for j, name in enumerate(header[1:-3], start=1):  # the metric columns
        places = {
            len(number.split(".")[1]) if "." in number else 0
            for row in rows
            for number in re.findall(r"-?\d+(?:\.\d+)?", row[j])
        }
        assert len(places) <= 1, (name, [row[j] for row in rows])
    records = [json.loads(p.read_text()) for p in out.glob("SlowIdentity*/*/*__s0.json")]
    mean = sum(r["wall_time_s"] for r in records) / len(records)
    (slow_row,) = [row for row in rows if row[0].startswith("SlowIdentity")]
    assert header[-1] == "s / edit" and float(slow_row[-1]) == pytest.approx(mean, abs=0.006)
    assert mean >= 0.05
    tex = (out / "report" / "table.tex").read_text()  # the paper's table has them too
    (tex_row,) = [line for line in tex.splitlines() if line.startswith("SlowIdentity")]
    assert "s / edit" in tex and tex_row.rstrip(" \\").endswith(f"{mean:.1f}")


def test_evaluate_says_which_metric_groups_it_could_not_compute(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*IDENTITY_RUN, "--limit", "1", "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "evaluated 1 jobs" in text
    assert "aclip metrics not computed:" in text and "checkpoint" in text.lower()
