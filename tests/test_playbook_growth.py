"""Growth curves and plates as a scientist analyses them (issue 22): kinetic reads fitted per well
after blank subtraction, blanks found and said how, end-point plates with their blanks and OVER
wells, units from the file or the lab's my_files. Files are generated with known truth
(tests/lab_files.py: Zwietering curves with known rates and lags, flat blanks, wells that never
grew); expectations come from the generator, never from the playbook's output.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from pathlib import Path

import pytest

from agent_sandbox.agent.playbook import SCRIPTS_DIR
from agent_sandbox.workspace import prepare_workspace
from tests import lab_files
from tests.test_playbook_agent import run_agent
from tests.test_playbook_rules import plots_of
from tests.test_playbook_scripts import analyze, column, findings, profile

PARAMETERS = ["well", "role", "max_od", "growth_rate_per_h", "doubling_time_h", "lag_h", "auc", "grew"]


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_kinetic_plate_rates_lags_blanks_and_wells_that_did_not_grow(tmp_path):
    truth = lab_files.kinetic_plate(tmp_path / "growth.txt", overflow=(("D6", 60),))
    prof = profile(tmp_path / "out", analyze(tmp_path / "growth.txt", tmp_path / "out")["tables"][0])
    folder = tmp_path / "out" / "growth"
    with open(folder / "growth_parameters.csv", encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == PARAMETERS
    params = {r["well"]: r for r in read_csv(folder / "growth_parameters.csv")}
    assert list(params) == truth["wells"]  # plate order
    # blanks: column 12, found as flat wells near the minimum forming a plate column; said so
    blanks = prof["growth"]["blanks"]
    assert blanks["wells"] == truth["blanks"] and blanks["kind"] == "flat" and "flat" in blanks["rule"]
    assert [w for w, r in params.items() if r["role"] == "blank"] == truth["blanks"]
    # every growing well's maximum specific growth rate within 15%, its lag within 0.5 h
    for well, rate in truth["rates"].items():
        r = params[well]
        assert r["grew"] == "true"
        assert float(r["growth_rate_per_h"]) == pytest.approx(rate, rel=0.15), well
        assert float(r["doubling_time_h"]) == pytest.approx(math.log(2) / float(r["growth_rate_per_h"]), rel=1e-3)
        assert float(r["lag_h"]) == pytest.approx(truth["lags"][well], abs=0.5), well
        assert float(r["max_od"]) == pytest.approx(truth["top"], abs=0.02)
    # wells inoculated that never grew: no rate, flagged as an instrument-level finding naming them
    for well in truth["no_growth"]:
        assert params[well]["grew"] == "false" and params[well]["growth_rate_per_h"] == ""
    flat = findings(prof, "no_growth")
    assert flat[0]["labels"] == truth["no_growth"] and flat[0]["severity"] == "instrument" and flat[0]["more"] == 0
    # the long table: one row per well and read, the blank at each read subtracted (median of the blanks)
    curves = read_csv(folder / "growth_curves.csv")
    assert list(curves[0]) == ["well", "time_h", "od", "od_blank_corrected"] and len(curves) == 96 * len(truth["hours"])
    raw = {(r["well"], float(r["time_h"])): r for r in curves}
    for k in (0, 40, 96):
        hour = truth["hours"][k]
        blank = statistics.median(round(truth["series"][w][k], 4) for w in truth["blanks"])
        row = raw[("B3", hour)]
        assert float(row["od"]) == pytest.approx(truth["series"]["B3"][k], abs=1e-4)
        assert float(row["od_blank_corrected"]) == pytest.approx(float(row["od"]) - blank, abs=1e-6)
    assert raw[("D6", truth["hours"][60])]["od"] == ""  # the OVRFLW read is missing, not a number
    # the unit from the file's `Read 1:600`, used in the plot titles; instrument problems rank first
    assert column(prof, "a1")["unit"] == "OD600" and prof["growth"]["unit"] == "OD600"
    sat = findings(prof, "saturated", "d6")[0]
    assert sat["labels"] == ["D6 at 15 h"] and sat["rank"] < flat[0]["rank"] < findings(prof, "blanks")[0]["rank"]
    kinds = {p["kind"]: p for p in prof["plots"]}
    assert {"growth_curves", "growth_curves_log", "growth_rate_heatmap", "max_od_heatmap"} <= set(kinds)
    assert "OD600 minus blank" in kinds["growth_curves"]["title"]
    assert all((tmp_path / "out" / p["path"]).stat().st_size > 10_000 for p in prof["plots"])
    assert "growth_by_sample" not in kinds  # no plate map: nothing names the samples


def test_long_table_with_labelled_blanks_in_minutes(tmp_path):
    truth = lab_files.long_growth_table(tmp_path / "long.csv")
    prof = profile(tmp_path / "out", analyze(tmp_path / "long.csv", tmp_path / "out")["tables"][0])
    g = prof["growth"]
    assert g["shape"] == "long" and g["wells"] == truth["wells"] and g["hours"] == pytest.approx(24.0)
    assert g["blanks"]["wells"] == truth["blanks"] and g["blanks"]["kind"] == "labels"
    assert "'media'" in g["blanks"]["rule"] and "sample" in g["blanks"]["rule"]
    params = {r["well"]: r for r in read_csv(tmp_path / "out" / "long" / "growth_parameters.csv")}
    for well, rate in truth["rates"].items():
        assert float(params[well]["growth_rate_per_h"]) == pytest.approx(rate, rel=0.15), well
    # the sample names group the curves: one cell per strain here (no replicates), so no by-sample plot
    assert {"growth_curves", "growth_rate_heatmap"} <= {p["kind"] for p in prof["plots"]}


def test_plate_map_and_units_from_my_files(tmp_path):
    """A plate map in my_files (well -> sample, `media` for blanks) decides the blanks, not the flat
    rule: F9, flat in the data, is a blank by the map, so only C5 did not grow; replicates are
    drawn per sample. units.csv gives the wells' unit, which the file does not name."""
    plate = tmp_path / "kinetic.txt"
    truth = lab_files.kinetic_plate(plate, reads=49, interval_h=0.5, read_label="Read 1")
    my_files = tmp_path / "my_files"
    my_files.mkdir()
    layout = {w: ("media" if w in truth["blanks"] + ["F9"] else truth["names"][w]) for w in truth["wells"]}
    lab_files.plate_map_csv(my_files / "plate_map.csv", layout)
    (my_files / "units.csv").write_text("column,unit\nwells,OD600\n", encoding="utf-8")
    ws = prepare_workspace(tmp_path / "root", "job22", [plate], my_files)
    out = tmp_path / "out"
    events = run_agent(ws, out)
    assert events[-1]["data"]["status"] == "succeeded"
    prof = json.loads((out / "kinetic" / "kinetic.profile.json").read_text())
    g = prof["growth"]
    assert g["blanks"]["kind"] == "plate map" and "(plate_map.csv)" in g["blanks"]["rule"]
    assert g["blanks"]["wells"] == sorted(truth["blanks"] + ["F9"], key=lambda w: (w[0], int(w[1:])))
    assert findings(prof, "no_growth")[0]["labels"] == ["C5"]
    assert plots_of(prof, "growth_by_sample")
    assert column(prof, "b7")["unit"] == "OD600" and column(prof, "b7")["unit_source"] == "units table"
    assert g["unit"] == "OD600"
    report = (out / "report.md").read_text()
    assert "growth_parameters.csv" in report and "| well | role | max_od | growth_rate_per_h |" in report


def test_plate_map_uploaded_beside_the_plate_serves_it(tmp_path):
    """A plate map uploaded with the plate (named like one) names its blanks too, and is read as a
    table of its own as well."""
    plate = tmp_path / "kinetic.txt"
    truth = lab_files.kinetic_plate(plate, reads=25, interval_h=1.0)
    layout = {w: ("blank" if w in truth["blanks"] + ["C5"] else truth["names"][w]) for w in truth["wells"]}
    lab_files.plate_map_csv(tmp_path / "plate_layout.csv", layout)
    ws = prepare_workspace(tmp_path / "root", "job22b", [plate, tmp_path / "plate_layout.csv"], None)
    out = tmp_path / "out"
    assert run_agent(ws, out)[-1]["data"]["status"] == "succeeded"
    g = json.loads((out / "kinetic" / "kinetic.profile.json").read_text())["growth"]
    assert g["blanks"]["kind"] == "plate map" and "(plate_layout.csv)" in g["blanks"]["rule"]
    assert "C5" in g["blanks"]["wells"] and [p["well"] for p in g["parameters"] if not p["grew"]
                                             and p["role"] == "sample"] == ["F9"]
    assert (out / "plate_layout" / "plate_layout.csv").is_file()


def test_endpoint_plate_blanks_over_and_readable_annotations(tmp_path):
    truth = lab_files.tecan_endpoint(tmp_path / "tecan.csv", over=("H11", "B3"))
    prof = profile(tmp_path / "out", analyze(tmp_path / "tecan.csv", tmp_path / "out")["tables"][0])
    b = prof["blanks"]
    assert b["wells"] == [f"{r}12" for r in "ABCDEFGH"] and b["kind"] == "flat" and b["value"] == "absorbance"
    assert b["level"] == pytest.approx(statistics.median(truth["values"][w] for w in b["wells"]), abs=1e-4)
    info = findings(prof, "blanks", "absorbance")[0]
    assert info["severity"] == "info" and info["labels"] == b["wells"]
    assert column(prof, "absorbance")["unit"] == "OD600"  # Tecan's `Measurement Wavelength;600;nm`, absorbance
    script = (tmp_path / "out" / "scripts" / "plot_tecan.py").read_text()
    assert "blanks=['A12', 'B12'" in script
    # drawn: OVER wells hatched and labelled, every value in a colour readable on its cell
    sys.path.insert(0, str(SCRIPTS_DIR))
    import plots
    cells = {w: v for w, v in truth["values"].items() if v is not None}
    fig = plots.draw_plate(cells, "t", "absorbance", flags={"H11": "OVER", "B3": "OVER"}, blanks=b["wells"])
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2
    texts = {t.get_text(): t for t in ax.texts}
    assert sum(t.get_text() == "OVER" for t in ax.texts) == 2
    image = ax.images[0]
    for well, value in cells.items():
        cell = image.cmap(image.norm(value))
        text = next(t for t in ax.texts if t.get_text() == f"{value:.3g}")
        assert contrast(cell, text.get_color()) >= 4.5, (well, value, text.get_color())
    assert texts


def contrast(rgba, colour: str) -> float:
    """WCAG contrast ratio between a cell's colour and a text colour."""
    import matplotlib.colors as mcolors

    def luminance(c):
        def channel(x):
            return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4
        r, g, b = (channel(x) for x in c[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    a, b = luminance(rgba), luminance(mcolors.to_rgba(colour))
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def test_table_of_wells_with_labelled_blanks_and_a_well_below_them(tmp_path):
    """One row per well (`A01` spelled with a zero), `medium` in the sample column for column 1: those
    are the blanks, said so; a well reading below every blank is named; a plate heatmap is drawn.
    When the sample column names every well and none is a blank, no well is taken for a blank."""
    lines = ["Well,Sample,OD600"]
    for r in "ABCDEFGH":
        for c in range(1, 13):
            od = 0.02 if f"{r}{c}" == "D7" else 0.05 if c == 1 else 0.3 + 0.05 * c
            lines.append(f"{r}{c:02d},{'medium' if c == 1 else f'strain{c}'},{od}")
    (tmp_path / "wells.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "wells.csv", tmp_path / "out")["tables"][0])
    b = prof["blanks"]
    assert b["wells"] == [f"{r}1" for r in "ABCDEFGH"] and b["kind"] == "labels" and "'medium'" in b["rule"]
    assert findings(prof, "below_blank")[0]["labels"] == ["D7"]
    assert plots_of(prof, "plate_heatmap")[0]["columns"] == ["od600"]
    (tmp_path / "named.csv").write_text("\n".join(line.replace("medium", "strain1") for line in lines) + "\n")
    prof = profile(tmp_path / "out2", analyze(tmp_path / "named.csv", tmp_path / "out2")["tables"][0])
    assert prof["blanks"]["wells"] == [] and "names every well" in prof["blanks"]["rule"]
    assert not findings(prof, "blanks")
