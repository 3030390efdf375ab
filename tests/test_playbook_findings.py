"""Plots that never mislead and findings a scientist acts on (issue 22): aggregated series say so
and have no edge artefact, groups are never averaged into one line, skewed counts give one
long-tail finding instead of a flood, findings name IDs and dates with the group split, missing
runs of a regular series are found, a small regression table gets its scatter plots, and the
report opens with answers. Generated files whose truth is known here.
"""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sandbox.agent.playbook import SCRIPTS_DIR
from tests import lab_files
from tests.test_playbook_rules import VEGA, plots_of
from tests.test_playbook_scripts import analyze, findings, profile

STACKLOSS = [(80, 27, 89, 42), (80, 27, 88, 37), (75, 25, 90, 37), (62, 24, 87, 28), (62, 22, 87, 18),
             (62, 23, 87, 18), (62, 24, 93, 19), (62, 24, 93, 20), (58, 23, 87, 15), (58, 18, 80, 14),
             (58, 18, 89, 14), (58, 17, 88, 13), (58, 18, 82, 11), (58, 19, 93, 12), (50, 18, 89, 8),
             (50, 18, 86, 7), (50, 19, 72, 8), (50, 19, 79, 8), (50, 20, 80, 9), (56, 20, 82, 15), (70, 20, 91, 15)]


def plots_module():
    sys.path.insert(0, str(SCRIPTS_DIR))
    import plots
    return plots


def test_daily_series_is_a_weekly_mean_that_says_so_without_edge_artefact(tmp_path):
    """1,100 days (too many to draw) are averaged per week: axis and title say 'weekly mean', and
    every week's mean is the true 50/7 (5 weekdays of 10, weekends 0), the last one included:
    no lone day at the edge drawn as a drop."""
    start = dt.date(2012, 1, 4)
    lines = ["day,rain_mm"] + [f"{start + dt.timedelta(days=k)},{10 if (start + dt.timedelta(days=k)).weekday() < 5 else 0}"
                               for k in range(1100)]
    (tmp_path / "rain.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "rain.csv", tmp_path / "out")["tables"][0])
    assert plots_of(prof, "timeseries")
    plots = plots_module()
    con = plots.open_table(tmp_path / "out" / "rain" / "rain.parquet")
    fig = plots.timeseries.__wrapped__(con, "clean", "day", ["rain_mm"], "Over day", units={"rain_mm": "mm"})
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("weekly mean of") and "weekly mean" in fig._suptitle.get_text()
    ys = [y for y in ax.get_lines()[0].get_ydata() if y == y]
    assert len(ys) == pytest.approx(1100 / 7, abs=1)
    assert all(abs(y - 50 / 7) <= 0.15 * 50 / 7 for y in ys), (ys[:2], ys[-2:])


def test_groups_are_lines_of_their_own(tmp_path):
    """Three sites measured on the same days: one line per site at its own level, never their mean."""
    levels = {"north": 1.0, "south": 5.0, "east": 9.0}
    lines = ["date,site,nitrate_mg_l"]
    for k in range(30):
        day = dt.date(2024, 3, 1) + dt.timedelta(days=k)
        lines += [f"{day},{site},{level + 0.01 * (k % 3)}" for site, level in levels.items()]
    (tmp_path / "sites.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "sites.csv", tmp_path / "out")["tables"][0])
    assert plots_of(prof, "timeseries")[0]["title"] == "Over date, by site"
    plots = plots_module()
    con = plots.open_table(tmp_path / "out" / "sites" / "sites.parquet")
    fig = plots.timeseries.__wrapped__(con, "clean", "date", ["nitrate_mg_l"], "t", group="site")
    drawn = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    assert set(drawn) == set(levels)
    for site, ys in drawn.items():
        assert all(levels[site] <= y <= levels[site] + 0.03 for y in ys)


def test_skewed_counts_are_a_long_tail_and_findings_name_ids_with_the_group_split(tmp_path):
    rng = random.Random(5)
    lines = ["sample_id,diagnosis,visits,mean_area"]
    far = set(range(40, 52))  # 12 areas far from the rest, all in malignant samples
    for k in range(1000):
        visits = rng.randint(150, 900) if k % 20 == 7 else rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5])
        diagnosis = "M" if k in far or k % 3 == 0 else "B"
        area = 5000 + k if k in far else round(600 + 100 * rng.uniform(-1, 1), 1)
        lines.append(f"WDBC{k:04d},{diagnosis},{visits},{area}")
    (tmp_path / "wdbc.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "wdbc.csv", tmp_path / "out")["tables"][0])
    # the count column: one long-tail finding with its size, not 50 outliers
    assert not findings(prof, "outliers", "visits")
    tail = findings(prof, "long_tail", "visits")
    assert len(tail) == 1 and "50 of 1,000 values" in tail[0]["detail"] and tail[0]["severity"] == "info"
    # the outliers named by sample ID (10 of them, and 2 more), all malignant
    out = findings(prof, "outliers", "mean_area")[0]
    assert out["labels"] == [f"WDBC{k:04d}" for k in sorted(far)][:10] and out["more"] == 2 and out["count"] == 12
    assert "and 2 more" in out["detail"] and "all 12 are M (diagnosis)" in out["detail"]
    assert out["rank"] < tail[0]["rank"]


def test_missing_runs_in_a_regular_weekly_series(tmp_path):
    """Weekly readings (as CO2 records are): 59 weeks without a value in three runs, and four weeks
    with no row at all."""
    start = dt.date(1958, 3, 29)
    missing = set(range(10, 12)) | set(range(100, 105)) | set(range(200, 252))
    dropped = set(range(300, 304))
    lines = ["week,co2_ppm"] + [f"{start + dt.timedelta(weeks=k)},{'' if k in missing else f'{315 + 0.02 * k:.2f}'}"
                                for k in range(400) if k not in dropped]
    (tmp_path / "co2.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "co2.csv", tmp_path / "out")["tables"][0])
    runs = findings(prof, "missing_times", "co2_ppm")[0]
    assert runs["count"] == 59 and "59 weeks without a co2_ppm value in 3 run(s)" in runs["detail"]
    assert runs["labels"][0] == f"{start + dt.timedelta(weeks=10)} to {start + dt.timedelta(weeks=11)}"
    assert f"the longest 52 weeks from {start + dt.timedelta(weeks=200)}" in runs["detail"]
    gaps = findings(prof, "missing_times", "week")[0]
    assert gaps["count"] == 4 and gaps["labels"] == [f"after {start + dt.timedelta(weeks=299)}"]


def test_small_regression_table_gets_each_predictor_against_the_outcome(tmp_path):
    (tmp_path / "stackloss.csv").write_text("Air.Flow,Water.Temp,Acid.Conc.,stack.loss\n"
                                            + "".join(",".join(map(str, r)) + "\n" for r in STACKLOSS))
    prof = profile(tmp_path / "out", analyze(tmp_path / "stackloss.csv", tmp_path / "out")["tables"][0])
    scatter = plots_of(prof, "scatter_vs_outcome")
    assert scatter[0]["columns"] == ["stack_loss", "air_flow", "water_temp", "acid_conc"]
    # named like nothing: the last column of a small table of measurements is the outcome
    (tmp_path / "plant.csv").write_text("flow,temp,acid,emission\n"
                                        + "".join(",".join(map(str, r)) + "\n" for r in STACKLOSS))
    prof = profile(tmp_path / "out2", analyze(tmp_path / "plant.csv", tmp_path / "out2")["tables"][0])
    assert plots_of(prof, "scatter_vs_outcome")[0]["columns"] == ["emission", "flow", "temperature", "acid"]


def test_report_opens_with_answers_then_plots_then_columns(tmp_path):
    out = tmp_path / "out"
    truth = lab_files.kinetic_plate(tmp_path / "growth.txt")
    analyze(tmp_path / "growth.txt", out)
    analyze(Path(str(VEGA / "iris.json")), out)
    proc = subprocess.run([sys.executable, str(SCRIPTS_DIR / "make_report.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert md.index("## Summary") < md.index("## Findings") < md.index("## Tables")
    summary = md[md.index("## Summary"):md.index("## Findings")]
    assert "growth (from growth.txt): A kinetic plate read: 96 wells x 97 reads over 24 h (OD600" in summary
    assert f"{len(truth['rates'])} of {len(truth['rates']) + 2} sample wells grew" in summary
    assert "did not grow: " + ", ".join(truth["no_growth"]) in summary
    findings_part = md[md.index("## Findings"):md.index("## Tables")]
    assert findings_part.index("growth (from growth.txt):") < findings_part.index("iris (from iris.json):")
    section = md[md.index("### growth (from growth.txt)"):md.index("### iris")]
    assert section.index("#### Plots of growth") < section.index("#### Growth parameters of growth") \
        < section.index("#### Columns of growth")
    assert "| A1 | sample |" in section and "| A12 | blank |" in section
    # full-width plots, each a link to the image at full size
    plot = "growth/plots/growth_growth_curves_time_a1_a2.png"
    assert f'<a href="{plot}" title="open full size"><img src="{plot}"' in html and "img{width:100%" in html
    assert "[![" in md and f"]({plot})]({plot})" in md


def test_identical_rows_found_in_full_after_a_first_look_at_the_most_varied_columns(tmp_path):
    """Rows 41-45 repeat rows 1-5 in every column; rows 46-50 repeat rows 6-10 in the two most
    varied columns (id and time) but not in the reading: only the first five are identical."""
    lines = ["sample_id,read_time,site,od"] + [f"{k},2024-01-01 00:{k:02d}:00,s{k % 3},{0.1 * (k % 7):.1f}"
                                               for k in range(40)]
    lines += [lines[1 + k] for k in range(5)] + [f"{k},2024-01-01 00:{k:02d}:00,s{k % 3},{0.1 * (k % 7) + 5:.1f}"
                                                 for k in range(5, 10)]
    (tmp_path / "reads.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "reads.csv", tmp_path / "out")["tables"][0])
    dup = findings(prof, "duplicate_rows")[0]
    assert dup["rows"] == [41, 42, 43, 44, 45] and prof["duplicate_rows"] == 5
