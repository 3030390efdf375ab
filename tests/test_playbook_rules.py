"""The playbook's rules for results a scientist can trust (issue 13), one test per rule, on
generated lab files (Tecan and BioTek Gen5 shapes, tests/lab_files.py) and real datasets
(palmerpenguins, vega_datasets). Each asserts the outcome in the cleaned data, the
profile's `plots` and `findings`, and the audit, against values computed here from the
generator's own numbers or the dataset's bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.resources
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sandbox.agent.playbook import SCRIPTS_DIR
from tests import lab_files
from tests.test_playbook_scripts import analyze, audit, column, findings, profile

VEGA = importlib.resources.files("vega_datasets") / "_data"
PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"


def cleaned_rows(out: Path, table: str) -> list[dict]:
    with open(out / table / f"{table}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def plots_of(prof: dict, kind: str) -> list[dict]:
    return [p for p in prof["plots"] if p["kind"] == kind]


# ---------------------------------------------------------------- never change the data silently

def test_identical_rows_are_kept_and_reported(tmp_path):
    """iris has one flower measured identically to another: it stays (virginica keeps 50)."""
    records = json.loads((VEGA / "iris.json").read_text())
    result = analyze(Path(str(VEGA / "iris.json")), tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    rows = cleaned_rows(tmp_path / "out", "iris")
    assert len(rows) == len(records) == prof["rows_after"]
    assert sum(r["species"] == "virginica" for r in rows) == sum(r["species"] == "virginica" for r in records) == 50
    seen, repeats = [], []
    for k, r in enumerate(records, start=1):
        key = tuple(sorted(r.items()))
        if key in seen:
            repeats.append((k, seen.index(key) + 1))
        seen.append(key)
    dup = findings(prof, "duplicate_rows")
    assert len(dup) == 1 and dup[0]["count"] == len(repeats) == 1
    assert dup[0]["rows"] == [k for k, _ in repeats] and f"repeats row {repeats[0][1]}" in dup[0]["detail"]
    assert prof["findings"][0]["kind"] == "duplicate_rows"  # the most important finding comes first
    assert audit(prof, "dropped duplicate rows") == []
    # the means a report states come from every row
    widths = [r["petalWidth"] for r in records]
    assert column(prof, "petal_width")["mean"] == pytest.approx(sum(widths) / len(widths))

    # removing them is an explicit option
    dropped = tmp_path / "dropped"
    subprocess.run([sys.executable, str(SCRIPTS_DIR / "analyze_table.py"), str(VEGA / "iris.json"), "--out",
                    str(dropped), "--drop-duplicates"], check=True, capture_output=True, timeout=120)
    prof = profile(dropped, "iris")
    assert (prof["rows_after"], prof["duplicate_rows_dropped"]) == (len(records) - 1, 1)
    assert audit(prof, "dropped duplicate rows")[0]["rows"] == 1


def test_a_column_kept_as_text_says_which_cells_and_rows(tmp_path):
    values = [f"{k * 0.5:.1f}" for k in range(16)]
    values[3], values[11] = "see notebook", "pending"
    lines = ["sample,yield"] + [f"s{k},{v}" for k, v in enumerate(values)]
    (tmp_path / "yields.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "yields.csv", tmp_path / "out")["tables"][0])
    assert column(prof, "yield")["type"] == "text"
    kept = audit(prof, "kept as text", "yield")
    assert len(kept) == 1 and kept[0]["cells"] == 2 and kept[0]["row_numbers"] == [4, 12]
    assert "'see notebook' in row 4" in kept[0]["detail"] and "'pending' in row 12" in kept[0]["detail"]
    assert [r["yield"] for r in cleaned_rows(tmp_path / "out", "yields")] == values  # nothing changed silently


def test_nan_and_infinity_strings_are_not_numbers(tmp_path):
    values = ["1.5", "NaN", "2.25", "inf", "3", "-Infinity"] + [f"{k}.5" for k in range(40)]
    (tmp_path / "vals.csv").write_text("id,value\n" + "".join(f"{k},{v}\n" for k, v in enumerate(values)))
    prof = profile(tmp_path / "out", analyze(tmp_path / "vals.csv", tmp_path / "out")["tables"][0])
    c = column(prof, "value")
    assert c["type"] == "number" and c["missing"] == 3
    numbers = [float(v) for v in values if v not in ("NaN", "inf", "-Infinity")]
    assert c["mean"] == pytest.approx(sum(numbers) / len(numbers))
    assert audit(prof, "missing markers set to missing", "value")[0]["cells"] == 1
    junk = audit(prof, "values that are not numbers set to missing", "value")[0]
    assert junk["cells"] == 2 and junk["row_numbers"] == [4, 6]


def test_units_row_is_read_as_units(tmp_path):
    truth = lab_files.units_row_table(tmp_path / "vitals.csv")
    prof = profile(tmp_path / "out", analyze(tmp_path / "vitals.csv", tmp_path / "out")["tables"][0])
    assert prof["rows_before"] == prof["rows_after"] == len(truth["rows"])  # no empty data row from the units
    assert {c["name"]: c["unit"] for c in prof["columns"]} == {"patient": None, **truth["units"]}
    assert [column(prof, c)["type"] for c in ("weight", "height", "pulse")] == ["integer"] * 3
    assert audit(prof, "units row read as units")[0]["detail"].startswith("line 2 (lb, in, bpm)")
    # the audit counts what changed: 8 values parsed per column, not 9
    assert audit(prof, "parsed as integer", "weight")[0]["cells"] == len(truth["rows"])
    weights = [r[1] for r in truth["rows"]]
    assert column(prof, "weight")["mean"] == pytest.approx(sum(weights) / len(weights))


def test_units_from_headers_and_temperature_names(tmp_path):
    truth = lab_files.gen5_kinetic(tmp_path / "growth.txt")
    prof = profile(tmp_path / "out", analyze(tmp_path / "growth.txt", tmp_path / "out")["tables"][0])
    t = column(prof, "temperature_600")
    assert (t["original"], t["unit"], t["role"]) == ("T° 600", "°C", "measure")
    assert any("'T° 600' -> temperature_600" in a["detail"] for a in audit(prof, "renamed column"))
    assert column(prof, "time")["unit"] == "h" and len(truth["wells"]) == 96


def test_routine_changes_are_one_line_per_kind(tmp_path):
    header = [f"Reading {k} (AU)" for k in range(98)]
    lines = [",".join(header)] + [",".join(f"{(k * r) % 17 / 10:.2f}" for k in range(98)) for r in range(12)]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "wide.csv", tmp_path / "out")["tables"][0])
    actions = [a["action"] for a in prof["audit"]]
    assert actions.count("renamed column") == 1 and actions.count("parsed as number") == 1
    renamed = audit(prof, "renamed column")[0]
    assert len(renamed["columns"]) == 98 and renamed["detail"].startswith("98 columns:")
    assert column(prof, "reading_0_au")["unit"] == "AU"


# ---------------------------------------------------------------- read instrument layouts

def test_tecan_plate_grid_with_footer_and_over(tmp_path):
    truth = lab_files.tecan_endpoint(tmp_path / "tecan.csv", over=("H11", "B3"))
    prof = profile(tmp_path / "out", analyze(tmp_path / "tecan.csv", tmp_path / "out")["tables"][0])
    rows = cleaned_rows(tmp_path / "out", "tecan")
    assert [c["name"] for c in prof["columns"]] == ["well", "row", "column", "absorbance", "absorbance_flag"]
    assert len(rows) == 96 and rows[0]["well"] == "A1" and rows[-1]["well"] == "H12"
    for r in rows:  # decimal commas read as numbers: no '0,0452' strings left, OVER is missing with its flag
        expected = truth["values"][r["well"]]
        assert (r["absorbance"] == "") if expected is None else float(r["absorbance"]) == pytest.approx(expected, abs=1e-4)
        assert r["absorbance_flag"] == ("OVER" if r["well"] in truth["over"] else "")
        assert r["row"] == r["well"][0] and r["column"] == r["well"][1:]
    assert column(prof, "absorbance")["type"] == "number"
    # the footer is metadata, not a row
    assert prof["footer"] == [truth["footer"]] and audit(prof, "footer kept as metadata")
    over_rows = sorted(k + 1 for k, r in enumerate(rows) if r["well"] in truth["over"])
    sat = findings(prof, "saturated", "absorbance")
    assert sat and sat[0]["rows"] == over_rows and sat[0]["count"] == 2
    assert audit(prof, "out-of-range markers set to missing", "absorbance")[0]["row_numbers"] == over_rows
    assert audit(prof, "plate grid read as one row per well")
    assert [p["columns"] for p in plots_of(prof, "plate_heatmap")] == [["absorbance"]]


def test_384_well_grid_in_a_workbook(tmp_path):
    import openpyxl
    letters = "ABCDEFGHIJKLMNOP"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Plate reader export"])
    sheet.append([])
    sheet.append([None] + list(range(1, 25)))
    for r, letter in enumerate(letters):
        sheet.append([letter] + [round(0.05 + 0.01 * r + 0.002 * c, 4) for c in range(1, 25)])
    book.save(tmp_path / "p384.xlsx")
    prof = profile(tmp_path / "out", analyze(tmp_path / "p384.xlsx", tmp_path / "out")["tables"][0])
    rows = cleaned_rows(tmp_path / "out", prof["table"])
    assert len(rows) == 384 and rows[-1]["well"] == "P24"
    value = prof["columns"][3]["name"]  # named after the title above the grid
    assert (value, column(prof, value)["type"]) == ("plate_reader_export", "number")
    assert float(rows[-1][value]) == pytest.approx(0.05 + 0.01 * 15 + 0.002 * 24)
    assert prof["reader"]["grids"] == [{"label": "Plate reader export", "rows": 16, "columns": 24}]
    assert plots_of(prof, "plate_heatmap")


def test_gen5_layout_grid_names_the_wells_blanks_and_replicates(tmp_path):
    truth = lab_files.gen5_endpoint_with_layout(tmp_path / "gen5.txt")
    prof = profile(tmp_path / "out", analyze(tmp_path / "gen5.txt", tmp_path / "out")["tables"][0])
    rows = cleaned_rows(tmp_path / "out", "gen5")
    assert {r["well"]: r["layout"] for r in rows} == truth["layout"]
    assert {r["well"]: float(r["read_600"]) for r in rows} == pytest.approx(truth["values"])
    blank = findings(prof, "blank_signal")
    assert [f["well"] for f in blank] == [truth["contaminated"]]
    assert blank[0]["rows"] == [next(k + 1 for k, r in enumerate(rows) if r["well"] == truth["contaminated"])]
    label, wells = truth["far_replicates"]
    cv = findings(prof, "replicate_cv")
    assert [f["wells"] for f in cv] == [wells] and label in cv[0]["detail"]


def test_growth_curve_with_elapsed_times_blanks_and_overflow(tmp_path):
    truth = lab_files.gen5_kinetic(tmp_path / "growth.txt")
    prof = profile(tmp_path / "out", analyze(tmp_path / "growth.txt", tmp_path / "out")["tables"][0])
    rows = cleaned_rows(tmp_path / "out", "growth")
    # h:mm:ss is a time axis in hours; one row per read, one column per well
    assert [float(r["time"]) for r in rows] == pytest.approx(truth["hours"])
    assert column(prof, "time")["role"] == "time" and column(prof, "a1")["role"] == "well"
    assert audit(prof, "parsed as elapsed time", "time")[0]["cells"] == len(truth["hours"])
    well, at = truth["overflow"][0]
    assert rows[at][well.lower()] == "" and rows[at][f"{well.lower()}_flag"] == "OVRFLW"
    assert float(rows[at - 1][well.lower()]) == pytest.approx(truth["series"][well][at - 1])
    assert findings(prof, "saturated", well.lower())[0]["rows"] == [at + 1]
    # the Layout grid above the table is the plate map: blanks and replicates are judged by it
    assert column(prof, "h12")["plate_map"] == {"Layout": "BLK"}
    assert [f["column"] for f in findings(prof, "blank_signal")] == [truth["contaminated"].lower()]
    far = [f for f in findings(prof, "replicate_cv") if truth["far_replicate"] in f["wells"]]
    assert far and "SPL1" in far[0]["detail"]
    kinds = [p["kind"] for p in prof["plots"]]
    assert {"growth_curves", "growth_curves_log", "growth_by_sample", "growth_rate_heatmap",
            "max_od_heatmap"} <= set(kinds)
    curves = plots_of(prof, "growth_curves")[0]
    assert curves["columns"] == ["time"] + [w.lower() for w in truth["wells"]]
    assert plots_of(prof, "growth_curves_log")[0]["log_scale"]
    # the contaminated blank is left out of the blank and the blanks' rule names the Layout grid
    assert prof["growth"]["blanks"]["kind"] == "plate map" and prof["growth"]["grown_blanks"] == [truth["contaminated"]]
    assert "histogram" not in [p["kind"] for p in prof["plots"] if p["columns"][0] in ("a1", "time")]


def test_tecan_kinetic_with_wells_as_rows(tmp_path):
    truth = lab_files.tecan_kinetic_wells_as_rows(tmp_path / "kinetic.csv")
    prof = profile(tmp_path / "out", analyze(tmp_path / "kinetic.csv", tmp_path / "out")["tables"][0])
    rows = cleaned_rows(tmp_path / "out", "kinetic")
    assert len(rows) == len(truth["times"]) and [int(r["time_s"]) for r in rows] == truth["times"]
    assert [float(r["b7"]) for r in rows] == pytest.approx(truth["series"]["B7"], abs=1e-4)
    assert column(prof, "time_s")["unit"] == "s" and column(prof, "time_s")["role"] == "time"
    assert column(prof, "temperature_c")["unit"] == "°C"
    assert prof["reader"]["layout"] == "wells as rows" and prof["footer"][0].startswith("End Time:")
    assert plots_of(prof, "growth_curves")[0]["columns"][0] == "time_s"


@pytest.mark.parametrize("marker,kind", [("OVER", "saturated"), ("OVRFLW", "saturated"), (">3.5", "saturated"),
                                         ("<LOD", "below_detection"), ("n.d.", "below_detection")])
def test_out_of_range_markers_are_missing_values_with_a_flag(tmp_path, marker, kind):
    values = [f"{0.1 * k:.2f}" for k in range(1, 13)]
    values[6] = marker
    (tmp_path / "conc.csv").write_text("sample,conc\n" + "".join(f"s{k},{v}\n" for k, v in enumerate(values)))
    prof = profile(tmp_path / "out", analyze(tmp_path / "conc.csv", tmp_path / "out")["tables"][0])
    assert column(prof, "conc")["type"] == "number" and column(prof, "conc")["missing"] == 1
    rows = cleaned_rows(tmp_path / "out", "conc")
    assert rows[6]["conc"] == "" and rows[6]["conc_flag"] == marker
    assert [f["rows"] for f in findings(prof, kind, "conc")] == [[7]]


def test_markers_past_the_sampled_rows(tmp_path):
    """The first 20,000 rows are clean numbers (read typed, fast); a marker further down makes
    the reader fall back to text, and the marker is handled as everywhere else."""
    values = [f"{k % 100 / 10:.1f}" for k in range(20500)]
    values[20100], values[20200] = "OVER", "NA"
    (tmp_path / "long.csv").write_text("t,od\n" + "".join(f"{k},{v}\n" for k, v in enumerate(values)))
    prof = profile(tmp_path / "out", analyze(tmp_path / "long.csv", tmp_path / "out")["tables"][0])
    assert column(prof, "od")["type"] == "number" and column(prof, "od")["missing"] == 2
    assert findings(prof, "saturated", "od")[0]["rows"] == [20101]
    assert audit(prof, "missing markers set to missing", "od")[0]["cells"] == 1
    numbers = [float(v) for v in values if v not in ("OVER", "NA")]
    assert column(prof, "od")["mean"] == pytest.approx(sum(numbers) / len(numbers))


def test_footer_after_a_plain_table_is_metadata(tmp_path):
    lines = ["sample,od600"] + [f"s{k},{0.1 * k:.2f}" for k in range(10)] + ["", "~End", "Signature:,J. Doe"]
    (tmp_path / "reads.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "reads.csv", tmp_path / "out")["tables"][0])
    assert prof["rows_after"] == 10 and column(prof, "od600")["type"] == "number"
    assert prof["footer"] == ["~End", "Signature:,J. Doe"]


def test_time_axes(tmp_path):
    """YYYYMMDD integers are dates, year columns and numbers named like time are time axes."""
    lines = ["run_date,year,t (min),hours,od600"]
    for k in range(12):
        day = dt.date(2024, 1, 28) + dt.timedelta(days=k)
        lines.append(f"{day:%Y%m%d},{2000 + k},{5 * k},{k / 2},{0.1 + 0.05 * k:.3f}")
    (tmp_path / "times.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "times.csv", tmp_path / "out")["tables"][0])
    assert column(prof, "run_date")["type"] == "date"
    assert (column(prof, "run_date")["first"], column(prof, "run_date")["last"]) == ("2024-01-28", "2024-02-08")
    assert audit(prof, "parsed as date", "run_date")[0]["cells"] == 12
    assert [column(prof, c)["role"] for c in ("run_date", "year", "t_min", "hours")] == ["time"] * 4
    assert column(prof, "t_min")["unit"] == "min" and column(prof, "hours")["unit"] == "h"
    assert plots_of(prof, "timeseries")[0]["columns"][:2] == ["run_date", "od600"]


# ---------------------------------------------------------------- plot by the data's structure

def test_no_line_across_long_gaps():
    sys.path.insert(0, str(SCRIPTS_DIR))
    import plots
    days = [dt.date(2007, 11, 10) + dt.timedelta(days=k) for k in range(20)]
    days += [dt.date(2008, 11, 10) + dt.timedelta(days=k) for k in range(20)]
    xs, ys = plots._break_gaps(days, list(range(40)))
    gaps = [k for k, y in enumerate(ys) if isinstance(y, float) and math.isnan(y)]
    assert len(gaps) == 1 and xs[gaps[0] - 1] == days[19] and xs[gaps[0] + 1] == days[20]


def test_penguins_plots_by_species_and_year(tmp_path):
    prof = profile(tmp_path / "out", analyze(Path(str(PENGUINS)), tmp_path / "out")["tables"][0])
    box = plots_of(prof, "box_by_group")
    assert box[0]["columns"][0] == "species"
    assert set(box[0]["columns"][1:]) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"}
    assert plots_of(prof, "timeseries")[0]["columns"][0] == "year"  # a year column is a time axis
    assert all((tmp_path / "out" / p["path"]).stat().st_size > 1000 for p in prof["plots"])


def test_wide_table_gets_one_correlation_of_all_columns(tmp_path):
    header = [f"m{k}" for k in range(30)]
    lines = [",".join(header)] + [",".join(f"{math.sin(r * (k + 1)):.4f}" for k in range(30)) for r in range(40)]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "wide.csv", tmp_path / "out")["tables"][0])
    corr = plots_of(prof, "correlation_heatmap")
    assert len(corr) == 1 and corr[0]["columns"] == header
    assert len(prof["plots"]) <= 12


def test_outcome_with_inputs_gets_scatter_plots(tmp_path):
    cars = json.loads((VEGA / "cars.json").read_text())
    prof = profile(tmp_path / "out", analyze(Path(str(VEGA / "cars.json")), tmp_path / "out")["tables"][0])
    scatter = plots_of(prof, "scatter_vs_outcome")
    assert scatter and scatter[0]["columns"][0] == "miles_per_gallon"
    assert {"horsepower", "weight_in_lbs"} <= set(scatter[0]["columns"][1:])
    assert column(prof, "year")["type"] == "date" and column(prof, "year")["role"] == "time"
    assert column(prof, "name")["role"] == "id" and not any("name" in p["columns"] for p in prof["plots"])
    assert prof["rows_after"] == len(cars)


def test_values_spanning_orders_of_magnitude_use_a_log_scale(tmp_path):
    burtin = json.loads((VEGA / "burtin.json").read_text())
    prof = profile(tmp_path / "out", analyze(Path(str(VEGA / "burtin.json")), tmp_path / "out")["tables"][0])
    mics = [b["Penicillin"] for b in burtin]
    assert max(mics) / min(mics) >= 1000
    groups = plots_of(prof, "strip_by_group")  # 16 bacteria: every point, by gram staining or genus
    assert groups and set(groups[0]["log_scale"]) == {"penicillin", "streptomycin", "neomycin"}
    # without a factor the distribution is a histogram, on a log scale too
    (tmp_path / "mic.csv").write_text("mic\n" + "".join(f"{m}\n" for m in mics))
    prof = profile(tmp_path / "out2", analyze(tmp_path / "mic.csv", tmp_path / "out2")["tables"][0])
    assert [(p["kind"], p["log_scale"]) for p in prof["plots"]] == [("histogram", ["mic"])]


def test_ids_get_no_bars_and_zero_one_columns_get_counts(tmp_path):
    lines = ["sample_id,infected,load"] + [f"{1000 + k},{k % 3 == 0:d},{(k * 37) % 11 + 0.5}" for k in range(30)]
    (tmp_path / "infection.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "infection.csv", tmp_path / "out")["tables"][0])
    assert column(prof, "sample_id")["role"] == "id" and column(prof, "infected")["role"] == "binary"
    assert not any("sample_id" in p["columns"] for p in prof["plots"])
    assert [p["kind"] for p in prof["plots"] if "infected" in p["columns"]] == ["counts"]
    assert [p["columns"] for p in plots_of(prof, "histogram")] == [["load"]]


# ---------------------------------------------------------------- findings

def test_findings_of_a_lab_table(tmp_path):
    """Constant, nearly empty, missing together, outliers, negative ODs, replicates apart."""
    lines = ["strain,replicate,od600,conc_um,instrument,note"]
    truth_rows = []
    for k in range(24):
        strain = f"S{k // 6}"
        od = 0.50 + 0.01 * (k % 6) + 0.1 * (k // 6)
        if k == 9:
            od = 9.5                       # far from the rest
        if k == 14:
            od = -0.02                     # a negative optical density
        if k == 20:
            od = 0.2                       # a replicate of S3 far from its partners (and not an outlier)
        conc = "" if k in (4, 17) else f"{1 + k % 6}"
        od_text = "" if k in (4, 17) else f"{od:.3f}"
        note = "re-read" if k == 7 else ""
        lines.append(f"{strain},{k % 6 + 1},{od_text},{conc},reader-1,{note}")
        truth_rows.append(k + 1)
    (tmp_path / "lab.csv").write_text("\n".join(lines) + "\n")
    prof = profile(tmp_path / "out", analyze(tmp_path / "lab.csv", tmp_path / "out")["tables"][0])
    kinds = [f["kind"] for f in prof["findings"]]
    # instrument problems first (a negative optical density), then the data's
    assert kinds == sorted(kinds, key=["negative_values", "replicate_cv", "outliers", "missing_together",
                                       "mostly_missing", "constant_column"].index)
    assert [f["rank"] for f in prof["findings"]] == sorted(f["rank"] for f in prof["findings"])
    assert findings(prof, "negative_values")[0]["severity"] == "instrument"
    assert {f["severity"] for f in prof["findings"] if f["kind"] != "negative_values"} == {"data"}
    assert findings(prof, "constant_column", "instrument")[0]["detail"] == "every row with a value holds 'reader-1'"
    assert findings(prof, "mostly_missing", "note")[0]["rows"] == [8]
    together = findings(prof, "missing_together")
    assert together[0]["rows"] == [5, 18] and together[0]["columns"] == ["od600", "conc_um"]
    assert findings(prof, "outliers", "od600")[0]["rows"] == [10]
    assert findings(prof, "negative_values", "od600")[0]["rows"] == [15]
    # S1 holds the outlier, S2 the negative reading (and one missing), S3 the replicate far from its
    # partners; only S0's replicates agree
    cv = {f["detail"].split(" differ")[0]: f["rows"] for f in findings(prof, "replicate_cv", "od600")}
    assert cv == {"6 replicates of strain=S1": list(range(7, 13)), "5 replicates of strain=S2": list(range(13, 19)),
                  "6 replicates of strain=S3": list(range(19, 25))}


def test_report_opens_with_findings_and_a_table_of_contents(tmp_path):
    out = tmp_path / "out"
    lab_files.tecan_endpoint(tmp_path / "tecan.csv")
    analyze(tmp_path / "tecan.csv", out)
    analyze(Path(str(VEGA / "iris.json")), out)
    proc = subprocess.run([sys.executable, str(SCRIPTS_DIR / "make_report.py"), "--out", str(out),
                           "--reference", "units.csv"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert md.index("- [Findings](#findings)") < md.index("## Findings") < md.index("## Tables")
    findings_part = md[md.index("## Findings"):md.index("## Tables")]
    # grouped per table, the table with an instrument problem (saturation) before iris' identical rows
    tecan, iris = findings_part.index("tecan (from tecan.csv):"), findings_part.index("iris (from iris.json):")
    assert tecan < findings_part.index("- saturated readings in absorbance [instrument]") < iris
    assert iris < findings_part.index("- identical rows [data]")
    assert '<h2 id="findings">Findings</h2>' in html and '<a href="#findings">' in html
    assert "| absorbance | " in md and "| culmen" not in md
    assert "- units.csv: reference only, not analysed as data" in md
    assert "python scripts/plot_tecan.py" in md
