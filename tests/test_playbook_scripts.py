"""The playbook's analysis scripts, run as the agent runs them (a real subprocess),
on real data shipped by palmerpenguins and on generated messy lab files.

Expected numbers are computed here independently (csv module, plain Python)
from the same bytes the script reads, never copied from its output.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.resources
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_sandbox.agent.playbook import SCRIPTS_DIR

PENGUINS_RAW = importlib.resources.files("palmerpenguins") / "data" / "penguins-raw.csv"
MISSING = {"", "NA", "N/A", "-", "null"}


def analyze(path: Path, out: Path, name: str | None = None) -> dict:
    args = [sys.executable, str(SCRIPTS_DIR / "analyze_table.py"), str(path), "--out", str(out)]
    if name:
        args += ["--name", name]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert proc.returncode == (1 if result["status"] == "failed" else 0), proc.stderr
    return result


def profile(out: Path, table: str) -> dict:
    return json.loads((out / table / f"{table}.profile.json").read_text(encoding="utf-8"))


def column(prof: dict, name: str) -> dict:
    return next(c for c in prof["columns"] if c["name"] == name)


def audit(prof: dict, action: str, col: str | None = None) -> list[dict]:
    """Audit entries of one kind; with `col`, that column's part of it (routine kinds are one entry
    for all columns, with each column's cells in `by_column`)."""
    found = [a for a in prof["audit"] if a["action"] == action]
    if col is None:
        return found
    out = []
    for a in found:
        if a["column"] == col or col in a.get("columns", []):
            out.append(dict(a, column=col, cells=a.get("by_column", {}).get(col, a["cells"])))
    return out


def findings(prof: dict, kind: str, col: str | None = None) -> list[dict]:
    return [f for f in prof["findings"] if f["kind"] == kind and (col is None or f["column"] == col)]


def test_penguins_raw(tmp_path):
    with PENGUINS_RAW.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    result = analyze(Path(str(PENGUINS_RAW)), tmp_path, "penguins")
    assert result["status"] == "ok" and result["tables"] == ["penguins"]
    prof = profile(tmp_path, "penguins")
    assert (prof["rows_before"], prof["columns_before"]) == (len(rows), len(rows[0]))
    unique = {tuple(r.values()) for r in rows}
    assert prof["rows_after"] == len(rows) and prof["duplicate_rows"] == len(rows) - len(unique) == 0

    mass = [float(r["Body Mass (g)"]) for r in rows if r["Body Mass (g)"] not in MISSING]
    c = column(prof, "body_mass_g")
    assert c["type"] == "integer" and c["original"] == "Body Mass (g)"
    assert c["missing"] == len(rows) - len(mass)
    assert c["min"] == min(mass) and c["max"] == max(mass)
    assert c["mean"] == pytest.approx(statistics.mean(mass), rel=1e-6)
    assert c["std"] == pytest.approx(statistics.stdev(mass), rel=1e-6)
    assert c["median"] == pytest.approx(statistics.median(mass))

    culmen = [float(r["Culmen Length (mm)"]) for r in rows if r["Culmen Length (mm)"] not in MISSING]
    assert column(prof, "culmen_length_mm")["type"] == "number"
    assert column(prof, "culmen_length_mm")["mean"] == pytest.approx(statistics.mean(culmen), rel=1e-6)

    eggs = sorted(r["Date Egg"] for r in rows)
    assert column(prof, "date_egg")["type"] == "date"
    assert (column(prof, "date_egg")["first"], column(prof, "date_egg")["last"]) == (eggs[0], eggs[-1])

    sexes = [r["Sex"] for r in rows if r["Sex"] not in MISSING]
    top = {t["value"]: t["count"] for t in column(prof, "sex")["top"]}
    assert top["MALE"] == sexes.count("MALE") and top["FEMALE"] == sexes.count("FEMALE")
    na_sex = sum(r["Sex"] in MISSING for r in rows)
    assert audit(prof, "missing markers set to missing", "sex")[0]["cells"] == na_sex
    assert column(prof, "study_name")["original"] == "studyName"
    # units kept as metadata: the name keeps them as snake_case, the unit keeps the symbol
    assert (column(prof, "culmen_length_mm")["unit"], column(prof, "body_mass_g")["unit"]) == ("mm", "g")
    assert column(prof, "delta_15_n_o_oo")["unit"] == "‰" and column(prof, "species")["unit"] is None
    # 17 renamed columns are one audit line, after the others
    renamed = audit(prof, "renamed column")
    assert len(renamed) == 1 and len(renamed[0]["columns"]) == len(rows[0]) and renamed[0]["column"] is None
    assert "'studyName' -> study_name" in renamed[0]["detail"] and prof["audit"][-1]["action"].startswith("parsed as")
    # the rows missing every measurement are one finding, with their row numbers
    measured = ["Culmen Length (mm)", "Culmen Depth (mm)", "Flipper Length (mm)", "Body Mass (g)"]
    unmeasured = [k + 1 for k, r in enumerate(rows) if all(r[m] in MISSING for m in measured)]
    together = [f for f in findings(prof, "missing_together") if set(f["columns"]) >= {"culmen_length_mm", "body_mass_g"}]
    assert together and together[0]["rows"] == unmeasured
    assert {f["column"] for f in findings(prof, "constant_column")} == {
        snake for snake, orig in (("region", "Region"), ("stage", "Stage")) if len({r[orig] for r in rows}) == 1}

    # cleaned outputs hold the same rows; plots exist and are capped
    with open(tmp_path / "penguins" / "penguins.csv", encoding="utf-8") as f:
        cleaned = list(csv.DictReader(f))
    assert len(cleaned) == prof["rows_after"] and "body_mass_g" in cleaned[0]
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "penguins" / "penguins.parquet").num_rows == prof["rows_after"]
    assert 1 <= len(prof["plots"]) <= 12
    assert all((tmp_path / p["path"]).stat().st_size > 1000 for p in prof["plots"])
    kinds = {}
    for p in prof["plots"]:
        kinds.setdefault(p["kind"], p["columns"])
    assert kinds["timeseries"][0] == "date_egg" and kinds["box_by_group"][0] == "species"
    assert not any(set(p["columns"]) & {"sample_number", "individual_id"} for p in prof["plots"])  # identifiers


def test_latin1_semicolons_decimal_comma(tmp_path):
    body = [("Probe", "Température (°C)", "Wert µM")]
    for i in range(30):
        body.append((f"é{i}", f"{36 + i / 10:.1f}".replace(".", ","), f"{i * 1.25:.2f}".replace(".", ",")))
    text = "\n".join(";".join(r) for r in body) + "\n"
    path = tmp_path / "messung.csv"
    path.write_bytes(text.encode("latin-1"))
    result = analyze(path, tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    reader = prof["reader"]
    assert (reader["delimiter"], reader["encoding"], reader["decimal_comma"]) == (";", "latin-1", True)
    assert [c["name"] for c in prof["columns"]] == ["probe", "temperature_c", "wert_um"]
    temps = [float(r[1].replace(",", ".")) for r in body[1:]]
    t = column(prof, "temperature_c")
    assert t["type"] == "number" and t["mean"] == pytest.approx(statistics.mean(temps))
    assert t["unit"] == "°C" and column(prof, "probe")["role"] == "id"
    with open(tmp_path / "out" / "messung" / "messung.csv", encoding="utf-8") as f:
        assert [r["probe"] for r in csv.DictReader(f)] == [r[0] for r in body[1:]]
    assert audit(prof, "parsed as number", "wert_um")[0]["cells"] == 30


def test_metadata_preamble_and_duplicates(tmp_path):
    sample = Path(__file__).resolve().parent.parent / "samples" / "plate_reader.csv"
    lines = sample.read_text(encoding="utf-8").splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.count(";") >= 2)
    data = [line.split(";") for line in lines[header_at + 1:] if line.strip()]
    result = analyze(sample, tmp_path)
    prof = profile(tmp_path, result["tables"][0])
    assert prof["metadata"] == [line for line in lines[:header_at] if line.strip()]
    assert prof["reader"]["header_line"] == header_at
    assert prof["rows_before"] == len(data)
    unique = {tuple(r) for r in data}
    # identical rows are kept (repeat measurements) and reported with their row numbers
    assert prof["rows_after"] == len(data) and prof["duplicate_rows_dropped"] == 0
    repeats = [k + 1 for k, r in enumerate(data) if r in data[:k]]
    assert prof["duplicate_rows"] == len(data) - len(unique) == len(repeats) >= 1
    assert findings(prof, "duplicate_rows")[0]["rows"] == repeats[:20]
    absorbance = column(prof, "absorbance")
    na = sum(r[3] == "NA" for r in data)
    assert absorbance["type"] == "number" and absorbance["missing"] == na
    assert column(prof, "read_time")["type"] == "datetime"


def messy_rows():
    """40 distinct records with BOM, duplicate headers, padding, markers, mixed dates."""
    rows = []
    base = dt.date(2026, 3, 1)
    for i in range(40):
        day = base + dt.timedelta(days=i)
        date = day.isoformat() if i % 2 else day.strftime("%d/%m/%Y")
        value = "oops" if i == 7 else f" {i * 0.5} "
        note = ["NA", "-", "null", "", "ok"][i % 5]
        rows.append([str(i), value, f"rep{i % 3}", date, note])
    return rows


def test_bom_duplicate_headers_blank_lines_mixed_types(tmp_path):
    rows = messy_rows()
    out = io.StringIO()
    out.write("Sample ID,Value,Value,Date,Note\n")
    for i, r in enumerate(rows):
        out.write(",".join(r) + "\n")
        if i in (5, 20):
            out.write("\n")  # blank lines are not rows
    out.write(",,,,\n")  # an empty record
    for r in (rows[3], rows[11], rows[11]):  # exact duplicates
        out.write(",".join(r) + "\n")
    path = tmp_path / "messy.csv"
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    result = analyze(path, tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    assert prof["reader"]["encoding"] == "utf-8-sig"
    assert [c["original"] for c in prof["columns"]] == ["Sample ID", "Value", "Value", "Date", "Note"]
    assert [c["name"] for c in prof["columns"]] == ["sample_id", "value", "value_2", "date", "note"]
    assert prof["rows_before"] == len(rows) + 1 + 3
    assert prof["empty_rows_dropped"] == 1 and prof["duplicate_rows"] == 3 and prof["duplicate_rows_dropped"] == 0
    assert prof["rows_after"] == len(rows) + 3
    by_type = {c["name"]: c["type"] for c in prof["columns"]}
    assert by_type == {"sample_id": "integer", "value": "number", "value_2": "text", "date": "date", "note": "text"}
    loss = audit(prof, "values that are not numbers set to missing", "value")
    assert loss and loss[0]["cells"] == 1 and "oops" in loss[0]["detail"]
    # numbers padded with spaces parse as they are: no text column was trimmed for them
    assert audit(prof, "trimmed whitespace", "value") == []
    dates = column(prof, "date")
    assert (dates["first"], dates["last"]) == ("2026-03-01", (dt.date(2026, 3, 1) + dt.timedelta(days=39)).isoformat())
    kept = rows + [rows[3], rows[11], rows[11]]
    markers = sum(r[4] in MISSING for r in kept)
    empty = sum(r[4] == "" for r in kept)
    # empty cells are already missing when read; the markers that were text are counted
    assert audit(prof, "missing markers set to missing", "note")[0]["cells"] == markers - empty
    assert column(prof, "note")["missing"] == markers
    assert audit(prof, "dropped duplicate rows") == []
    # the repeats are rows 41..43 of the cleaned table (the empty record is gone): 4, 12 and 12 again
    dup = findings(prof, "duplicate_rows")[0]
    assert (dup["count"], dup["rows"]) == (3, [len(rows) + 1, len(rows) + 2, len(rows) + 3])
    with open(tmp_path / "out" / "messy" / "messy.csv", encoding="utf-8") as f:
        cleaned = list(csv.DictReader(f))
    assert [r["sample_id"] for r in cleaned] == [r[0] for r in kept]  # every row, in file order


def test_two_sheet_excel(tmp_path):
    import openpyxl
    book = openpyxl.Workbook()
    growth = book.active
    growth.title = "Growth Curve"
    growth.append(["Strain: K12"])
    growth.append([])
    growth.append(["Time (h)", "OD600", "Measured"])
    for h in range(24):
        growth.append([h, round(0.05 * 1.3 ** (h / 3), 4), dt.datetime(2026, 3, 14, h, 0)])
    growth.append([3, round(0.05 * 1.3 ** 1, 4), dt.datetime(2026, 3, 14, 3, 0)])  # duplicate of hour 3
    plates = book.create_sheet("Plates")
    plates.append(["plate", "wells", "site"])
    for i in range(5):
        plates.append([f"P{i}", 96, "north" if i % 2 else "south"])
    book.create_sheet("Empty")
    path = tmp_path / "run.xlsx"
    book.save(path)
    result = analyze(path, tmp_path / "out", "run")
    assert result["tables"] == ["run__growth_curve", "run__plates"]
    assert result["skipped_sheets"] == [{"sheet": "Empty", "reason": "the sheet is empty"}]
    g = profile(tmp_path / "out", "run__growth_curve")
    assert g["metadata"] == ["Strain: K12"] and g["sheet"] == "Growth Curve"
    assert (g["rows_before"], g["rows_after"], g["duplicate_rows"]) == (25, 25, 1)
    assert {c["name"]: c["type"] for c in g["columns"]} == {"time_h": "integer", "od600": "number", "measured": "datetime"}
    assert column(g, "od600")["max"] == pytest.approx(round(0.05 * 1.3 ** (23 / 3), 4))
    p = profile(tmp_path / "out", "run__plates")
    assert (p["rows_after"], p["columns_after"]) == (5, 3)
    assert {t["value"]: t["count"] for t in column(p, "site")["top"]} == {"north": 2, "south": 3}


def test_jsonl_nested_fields(tmp_path):
    records = [{"id": i, "meta": {"site": ["north", "south"][i % 2], "temp": {"c": 20 + i / 4}},
                "tags": ["a", "b"][: i % 3]} for i in range(12)]
    records.append(records[4])
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = analyze(path, tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    assert [c["original"] for c in prof["columns"]] == ["id", "meta.site", "meta.temp.c", "tags"]
    assert [c["name"] for c in prof["columns"]] == ["id", "meta_site", "meta_temp_c", "tags"]
    assert (prof["rows_before"], prof["rows_after"]) == (13, 13)
    assert findings(prof, "duplicate_rows")[0]["rows"] == [13]
    temps = [r["meta"]["temp"]["c"] for r in records]
    assert column(prof, "meta_temp_c")["mean"] == pytest.approx(statistics.mean(temps))


def test_json_document_wrapping_its_records(tmp_path):
    doc = {"instrument": "X200", "data": [{"well": f"A{i}", "od": {"600": i / 10}} for i in range(1, 9)]}
    (tmp_path / "plate.json").write_text(json.dumps(doc))
    result = analyze(tmp_path / "plate.json", tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    assert prof["metadata"] == ["instrument: X200"]
    assert [c["original"] for c in prof["columns"]] == ["well", "od.600"]
    assert prof["rows_after"] == len(doc["data"])
    assert column(prof, "od_600")["max"] == pytest.approx(max(r["od"]["600"] for r in doc["data"]))


def test_parquet_with_text_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    values = [f"{i * 1.5}" for i in range(20)] + ["n/a"]
    pq.write_table(pa.table({"Run": list(range(21)), "Yield %": values}), tmp_path / "yield.parquet")
    result = analyze(tmp_path / "yield.parquet", tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    assert {c["name"]: c["type"] for c in prof["columns"]} == {"run": "integer", "yield_pct": "number"}
    assert column(prof, "yield_pct")["missing"] == 1
    assert column(prof, "yield_pct")["max"] == pytest.approx(19 * 1.5)


@pytest.mark.parametrize("name,data,reason", [
    ("notes.md", b"# Notes\n\nSome, text; here.\n", "Markdown text, not a table"),
    ("blob.dat", b"\x00\x01\x02binary" * 10, "binary content, not text"),
    ("empty.csv", b"", "the file is empty"),
    ("prose.txt", b"This is a sentence.\nAnother line, with a comma.\nA third; odd one.\nEnd\n", "no consistent columns"),
])
def test_not_a_table_is_skipped_with_a_note(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    result = analyze(path, tmp_path / "out")
    assert result["status"] == "skipped" and reason in result["reason"] and result["tables"] == []
    record = json.loads((tmp_path / "out" / "inputs" / f"{path.stem}.json").read_text())
    assert record["status"] == "skipped"
    assert not (tmp_path / "out" / ".scratch").exists()


def test_corrupt_file_fails_cleanly(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all\n")
    result = analyze(path, tmp_path / "out")
    assert result["status"] == "failed" and result["reason"]
    assert "Traceback" not in result["reason"]
    assert not (tmp_path / "out" / ".scratch").exists()


def test_report_from_results(tmp_path):
    out = tmp_path / "out"
    analyze(Path(str(PENGUINS_RAW)), out, "penguins")
    (tmp_path / "README.md").write_text("# hi\n")
    analyze(tmp_path / "README.md", out)
    proc = subprocess.run([sys.executable, str(SCRIPTS_DIR / "make_report.py"), "--out", str(out),
                           "--failed", "conc=5.csv", "killed"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    prof = profile(out, "penguins")
    assert f"| penguins | penguins-raw.csv | {prof['rows_before']} | {prof['rows_after']} |" in md
    assert "README.md: skipped, Markdown text, not a table" in md and "conc=5.csv: FAILED, killed" in md
    for plot in prof["plots"]:
        assert f"]({plot['path']})" in md and f'src="{plot["path"]}"' in html
    assert "<script" not in html.lower()
    assert "parsed as date" in html and "body_mass_g" in html


def test_ragged_lines_are_read_and_noted(tmp_path):
    lines = ["a,b", "1,2", "3,4,5", "6", "7,8"]
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    result = analyze(path, tmp_path / "out")
    prof = profile(tmp_path / "out", result["tables"][0])
    assert (prof["rows_before"], prof["columns_before"]) == (len(lines) - 1, 2)
    long_lines = sum(line.count(",") + 1 > 2 for line in lines)
    assert any(n.startswith(f"{long_lines} of the first lines have more fields") for n in prof["notes"])
    assert column(prof, "b")["missing"] == 1  # the short line is padded with a missing value


def test_header_only_file_is_skipped(tmp_path):
    (tmp_path / "header.csv").write_text("x,y\n")
    result = analyze(tmp_path / "header.csv", tmp_path / "out")
    assert (result["status"], result["reason"]) == ("skipped", "no data rows below the header")
    assert not (tmp_path / "out" / "header").exists()


def test_line_breaks_inside_quotes_early_and_late(tmp_path):
    # late: past the 256 KB the sniffer reads, so DuckDB's parallel reader meets it unprepared
    filler = [f"{i},plain {i}" for i in range(30000)]
    for where, rows in (("early", ['1,"two\nlines"'] + filler), ("late", filler + ['1,"two\nlines"'])):
        path = tmp_path / f"{where}.csv"
        path.write_text("id,note\n" + "\n".join(rows) + "\n")
        with open(path, newline="") as f:
            expected = list(csv.reader(f))[1:]
        result = analyze(path, tmp_path / "out")
        prof = profile(tmp_path / "out", result["tables"][0])
        assert prof["rows_before"] == len(expected), where
        with open(tmp_path / "out" / where / f"{where}.csv", newline="") as f:
            notes = [r[1] for r in csv.reader(f)][1:]
        assert "two\nlines" in notes


def test_latin1_bytes_past_the_sniffed_sample(tmp_path):
    # the first 256 KB are plain ASCII, so the sniffer says UTF-8; DuckDB meets the é later
    rows = ["id,probe,value"] + [f"{i},plain {i},{i / 3:.3f}" for i in range(20000)] + ["20000,caf\xe9,1.5"]
    path = tmp_path / "late.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    result = analyze(path, tmp_path / "out")
    assert result["status"] == "ok" and result["tables"] == ["late"]
    # no half-written retry left: the table, its record and its plot script
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["inputs", "late", "scripts"]
    prof = profile(tmp_path / "out", "late")
    assert prof["reader"]["encoding"] == "latin-1" and "256 KB" in prof["reader"]["encoding_note"]
    assert prof["rows_before"] == prof["rows_after"] == 20001
    with open(tmp_path / "out" / "late" / "late.csv", encoding="utf-8", newline="") as f:
        assert list(csv.reader(f))[-1] == ["20000", "café", "1.5"]


def test_wide_plate_reader_table(tmp_path):
    # a 384-well plate read over time: hundreds of columns, some with padded text
    header = ["time"] + [f"{r}{c}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
    lines = [",".join(header)]
    for t in range(300):
        lines.append(",".join([f"2026-01-01 00:{t // 60:02d}:{t % 60:02d}"]
                              + [f"{(t * 7 + w) % 1000 / 1000:.3f}" if w % 5 else f" s{w % 3} " for w in range(384)]))
    path = tmp_path / "plate.csv"
    path.write_text("\n".join(lines) + "\n")
    result = analyze(path, tmp_path / "out")
    assert result["status"] == "ok", result["reason"]
    prof = profile(tmp_path / "out", "plate")
    assert (prof["rows_after"], prof["columns_after"]) == (300, 385)
    assert column(prof, "a2")["type"] == "number" and column(prof, "a1")["type"] == "text"
    assert audit(prof, "trimmed whitespace", "a1")[0]["cells"] == 300
    assert column(prof, "time")["type"] == "datetime"


def test_integers_in_the_sample_then_decimals_and_words_below(tmp_path):
    # types are guessed on the first 20,000 rows; the rows below decide what they become
    n = 20500
    lines = ["run,count,dose"]
    for i in range(n):
        below = i >= 20000
        dose = ("n/d" if i % 50 == 0 else f"{i}.5") if below else str(i)
        lines.append(f"{i},{i % 7}{'.25' if below else ''},{dose}")
    path = tmp_path / "late_types.csv"
    path.write_text("\n".join(lines) + "\n")
    assert analyze(path, tmp_path / "out")["status"] == "ok"
    prof = profile(tmp_path / "out", "late_types")
    assert [column(prof, c)["type"] for c in ("run", "count", "dose")] == ["integer", "number", "number"]
    assert column(prof, "count")["max"] == pytest.approx(6.25)
    lost = audit(prof, "values that are not numbers set to missing", "dose")
    assert lost[0]["cells"] == 10 and "'n/d'" in lost[0]["detail"]
    assert column(prof, "dose")["missing"] == 10
    with open(tmp_path / "out" / "late_types" / "late_types.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[20001]["dose"] == "20001.5" and rows[19999]["dose"] == "19999.0"


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_plots_drawn_here_when_the_drawing_process_is_killed(tmp_path):
    # the plots are drawn by a process forked at the start; killed, the analysis draws them itself
    from tests import lab_files

    lab_files.kinetic_plate(tmp_path / "growth.txt")
    proc = subprocess.Popen([sys.executable, str(SCRIPTS_DIR / "analyze_table.py"), str(tmp_path / "growth.txt"),
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    while proc.poll() is None and not killed:
        for child in children_of(proc.pid):
            os.kill(child, signal.SIGKILL)
            killed.append(child)
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    assert killed, "the analysis started no drawing process"
    result = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
    assert proc.returncode == 0 and result["status"] == "ok", err
    prof = profile(tmp_path / "out", "growth")
    assert not any("plots" in note for note in prof["notes"]), prof["notes"]
    assert {p["kind"] for p in prof["plots"]} >= {"growth_curves", "growth_curves_log", "growth_rate_heatmap"}
    assert all((tmp_path / "out" / p["path"]).stat().st_size > 0 for p in prof["plots"])
    assert not (tmp_path / "out" / ".scratch").exists()


def test_broken_matplotlib_setting_costs_the_plots_only(tmp_path):
    # an invalid MPLBACKEND makes importing matplotlib fail, in the drawing process and here alike
    path = tmp_path / "runs.csv"
    path.write_text("run,dose,yield\n" + "".join(f"{i},{['low', 'high'][i % 2]},{i * 1.5}\n" for i in range(40)))
    proc = subprocess.run([sys.executable, str(SCRIPTS_DIR / "analyze_table.py"), str(path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "nonsense"})
    result = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert proc.returncode == 0 and result["status"] == "ok"
    prof = profile(tmp_path / "out", "runs")
    assert prof["plots"] == [] and any(n.startswith("the plots could not be drawn: ValueError") for n in prof["notes"])
    assert (tmp_path / "out" / "runs" / "runs.csv").read_text().splitlines()[1] == "0,low,0.0"
    assert (tmp_path / "out" / "runs" / "runs.parquet").stat().st_size > 0
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 1
