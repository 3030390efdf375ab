"""Analyse one input file: read, clean, profile, find, plot and save every table in it.

    python analyze_table.py INPUT --out RESULTS --name NAME [--label SHOWN_NAME]
                            [--reference FILE ...] [--drop-duplicates]

For each table (an Excel file has one per sheet) it writes, under RESULTS:
    <table>/<table>.csv, <table>/<table>.parquet      the cleaned table (identical rows kept)
    <table>/<table>.profile.json                     profile (with units), findings, plots, reader options, audit
    <table>/plots/<table>_*.png                      plots, drawn by scripts/plot_<table>.py (edit and rerun it)
and always inputs/<NAME>.json: what happened to the file (ok, skipped, failed).
The last line printed is `RESULT {...}` for whoever drives this script.
--reference names reference files (a lab's my_files): a plate map among them joins the plate.
--drop-duplicates removes rows identical to an earlier one (they are kept and reported otherwise).

Exit code 0 when the file was analysed or skipped as not a table, 1 when it failed.
Work happens in DuckDB with a memory limit: in memory for inputs up to 128 MB, in a database
file under RESULTS/.scratch above that, so files far larger than memory are processed; the
scratch is removed.
Self-contained: needs duckdb, openpyxl, matplotlib and the sibling scripts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clean_table import EmptyTable, clean_table, find_duplicates  # noqa: E402
from common import MB, snake_case, sql_str  # noqa: E402
from findings import find_all  # noqa: E402
from plot_table import plot_table  # noqa: E402
from profile_table import profile_table  # noqa: E402
from read_table import NotATable, open_tables  # noqa: E402
from roles import time_axis  # noqa: E402
from units import read_units_file, reading_unit  # noqa: E402

IN_MEMORY_BYTES = 128 * MB  # inputs up to this size are worked on in memory (a few times their size)


def connect(scratch: Path, memory_limit: str, threads: int, in_memory: bool):
    """DuckDB in memory for small inputs (writing tables to disk would double the time),
    in a database file under the scratch folder for big ones, so memory stays bounded."""
    import duckdb

    con = duckdb.connect(":memory:" if in_memory else str(scratch / "work.duckdb"))
    con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    con.execute(f"SET temp_directory = {sql_str(str(scratch / 'spill'))}")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    return con


def table_name(out: Path, base: str, sheet: str | None) -> str:
    name = f"{base}__{snake_case(sheet) or 'sheet'}" if sheet is not None else base
    candidate, n = name, 1
    while (out / candidate).exists():
        n += 1
        candidate = f"{name}_{n}"
    return candidate


# ZSTD at level 1: a Parquet file a third larger than at the default level 3, for a seventh less CPU
FORMATS = {"csv": "FORMAT CSV, HEADER", "parquet": "FORMAT PARQUET, COMPRESSION ZSTD, COMPRESSION_LEVEL 1"}


def write_table(con, out: Path, name: str, kind: str) -> dict:
    """The cleaned table as <name>/<name>.csv or .parquet; returns {path, size}."""
    path = out / name / f"{name}.{kind}"
    con.execute(f"COPY clean TO {sql_str(str(path))} ({FORMATS[kind]})")
    return {"path": f"{name}/{path.name}", "size": path.stat().st_size}


def size_notes(files: dict, max_file_bytes: int) -> list[str]:
    notes = []
    for kind, entry in files.items():
        if entry["size"] > max_file_bytes:
            notes.append(f"the cleaned {kind.upper()} is {entry['size'] / MB:.1f} MB, over the "
                         f"{max_file_bytes / MB:.0f} MB preview threshold: it comes back for download, not previewed, within "
                         f"the job's output limit"
                         + ("; the Parquet file holds the same data, compressed" if kind == "csv" else ""))
    return notes


READING_KEYS = {"wells", "well", "reading", "readings", "od", "absorbance"}  # a units table's name for the plate's readings


def apply_units(profile: dict, reader: dict, unit_table: dict[str, str]) -> None:
    """Units the lab gave (my_files/units.csv) win; a plate reader's readings (well columns, a
    table of wells' values) without a unit take the one the file's header lines name (OD600)."""
    by_name = {snake_case(k): v for k, v in unit_table.items()}
    reading, source = next((v for k, v in by_name.items() if k in READING_KEYS), None), "units table"
    if reading is None:
        reading, source = reading_unit(reader.get("metadata", []) + [g["label"] for g in reader.get("grids", [])]), \
            "file header"
    plate_table = reader.get("layout") == "plate grid"
    for c in profile["column_profiles"]:
        given = unit_table.get(c.get("original") or "") or by_name.get(c["name"])
        if given:
            c["unit"], c["unit_source"] = given, "units table"
        elif reading and not c.get("unit") and (c["role"] == "well" or (plate_table and c["role"] == "measure")):
            c["unit"], c["unit_source"] = reading, source


def growth_or_blanks(con, profile: dict, reader: dict, folder: Path, notes: list[str]) -> None:
    """A kinetic read gets its growth analysis (profile["growth"]), a table of wells its blanks
    (profile["blanks"]); a failure is a note, the rest of the analysis goes on."""
    try:
        axis = time_axis(profile["column_profiles"])
        if axis is not None and any(c["role"] == "well" or c["name"] == "well" for c in profile["column_profiles"]):
            import growth

            shape = growth.kinetic_shape(profile, axis)
            if shape is not None:
                started = time.perf_counter()
                found = growth.analyse(con, "clean", profile, axis, shape, reader.get("plate_map") or {},
                                       reader.get("plate_map_source") or "", folder)
                if found:
                    profile["growth"] = dict(found, seconds=round(time.perf_counter() - started, 3))
                    print(f"[{folder.name}] growth of {len(found['wells'])} wells x {found['reads']} reads: blanks "
                          f"{len(found['blanks']['wells'])} ({found['blanks']['kind']}), "
                          f"{sum(p['grew'] for p in found['parameters'] if p['role'] == 'sample')} grew", flush=True)
                    return
        plate_table = reader.get("layout") == "plate grid"
        well = next((c for c in profile["column_profiles"] if c["name"] == "well" and c["type"] == "text"), None)
        if plate_table or (well and (well.get("distinct") or 0) >= max(6, 0.9 * profile["rows"])):
            from blanks import endpoint_blanks

            found = endpoint_blanks(con, "clean", profile["column_profiles"], reader.get("plate_map_columns") or [],
                                    reader.get("plate_map_source") or "", plate_table)
            if found:
                profile["blanks"] = found
    except Exception as exc:  # the table is still read, cleaned, profiled and plotted
        notes.append(f"the growth and blank analysis failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def analyze_one(con, spec: dict, source: str, out: Path, base: str, max_file_bytes: int,
                drop_duplicates: bool = False, unit_table: dict | None = None) -> dict:
    started = time.time()
    name = table_name(out, base, spec["sheet"])
    (out / name).mkdir(parents=True)
    reader = spec["reader"]
    print(f"[{name}] reading {source}" + (f" sheet {spec['sheet']!r}" if spec["sheet"] else "")
          + (f" (delimiter {reader['delimiter']!r}, encoding {reader['encoding']}, "
             f"data from line {reader['data_line'] + 1})" if reader.get("delimiter") else f" ({reader['format']})")
          + (f", {reader['layout']}" if reader.get("layout") else ""), flush=True)
    try:
        cleaned = clean_table(con, spec["view"], spec["names"], "clean", reader.get("decimal_comma", False),
                              units=reader.get("units"), notes=spec.get("notes"), drop_duplicates=drop_duplicates,
                              typed_view=spec.get("typed_view"), before_load=start_plot_import)
    except Exception:  # an empty table, or a read to retry with other options: leave nothing behind
        shutil.rmtree(out / name)
        raise
    print(f"[{name}] cleaned: {cleaned['rows_before']} -> {cleaned['rows_after']} rows, "
          f"{cleaned['columns_before']} -> {cleaned['columns_after']} columns, "
          f"{len(cleaned['audit'])} audit entries", flush=True)
    # From here the work runs in threads so that both cores stay busy (DuckDB works in C++ without
    # the GIL; each thread has its own cursor): DuckDB writes the CSV with one thread, so it starts
    # first, beside the profile; then matplotlib draws the plots (in Python) while DuckDB writes
    # the Parquet and looks for findings.
    saved = {kind: {} for kind in FORMATS}
    writers = [threading.Thread(target=in_thread, args=(saved[kind], write_table, con.cursor(), out, name, kind))
               for kind in FORMATS]
    writers[0].start()
    drawn: dict = {}
    drawer = None
    early_notes: list[str] = []
    try:
        profile = profile_table(con, "clean", cleaned["columns"], plate_table=reader.get("layout") == "plate grid")
        plate_map = reader.get("plate_map") or {}
        for c in profile["column_profiles"]:
            labels = {k: m[c["name"].upper()] for k, m in plate_map.items()
                      if c["role"] == "well" and c["name"].upper() in m}
            if labels:
                c["plate_map"] = labels
        apply_units(profile, reader, unit_table or {})
        growth_or_blanks(con, profile, reader, out / name, early_notes)
        drawer = threading.Thread(target=in_thread, args=(drawn, plot_table, con.cursor(), "clean", profile, out,
                                                           name, source))
        drawer.start()
        writers[1].start()
        if not drop_duplicates:
            cleaned["duplicates"] = find_duplicates(con, "clean", [c["name"] for c in cleaned["columns"]],
                                                    {c["name"]: c["distinct"] for c in profile["column_profiles"]},
                                                    profile["rows"])
            cleaned["duplicate_rows"] = cleaned["duplicates"]["count"]
        findings = find_all(con, "clean", profile, cleaned, plate_map)
    finally:
        for thread in writers + [drawer]:
            if thread is not None and thread.ident is not None:
                thread.join()
    for kind, box in saved.items():
        if "error" in box:
            raise RuntimeError(f"the cleaned {kind.upper()} could not be written: {box['error']}")
    files = {kind: box["result"] for kind, box in saved.items()}
    notes = early_notes + size_notes(files, max_file_bytes)
    if "error" in drawn:
        notes.append(f"the plots could not be drawn: {drawn['error']}")
    plots = drawn.get("result", [])
    if reader.get("long_lines"):
        notes.append(f"{reader['long_lines']} of the first lines have more fields than the header; "
                     f"their extra fields were not read")
    if profile["approximate"]:
        notes.append("distinct counts are approximate (HyperLogLog over every row, as the table has more than "
                     "1,000,000 rows); every other figure is exact")
    print(f"[{name}] profiled {profile['columns']} columns, {len(findings)} findings, {len(plots)} plots, "
          f"CSV {files['csv']['size'] / MB:.2f} MB, Parquet {files['parquet']['size'] / MB:.2f} MB", flush=True)
    result = {
        "table": name, "source": source, "sheet": spec["sheet"],
        "reader": {k: v for k, v in reader.items() if k not in ("header", "metadata", "footer", "plate_map")},
        "metadata": reader.get("metadata", []), "footer": reader.get("footer", []),
        "rows_before": cleaned["rows_before"], "columns_before": cleaned["columns_before"],
        "rows_after": cleaned["rows_after"], "columns_after": cleaned["columns_after"],
        "empty_rows_dropped": cleaned["empty_rows"], "duplicate_rows": cleaned["duplicate_rows"],
        "duplicate_rows_dropped": cleaned["duplicates_dropped"],
        "approximate": profile["approximate"], "columns": profile["column_profiles"],
        "findings": findings, "audit": cleaned["audit"], "plots": plots,
        **{k: profile[k] for k in ("growth", "blanks") if k in profile},
        "files": files, "notes": notes, "seconds": round(time.time() - started, 2),
    }
    profile_path = out / name / f"{name}.profile.json"
    profile_path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    con.execute("DROP TABLE clean")
    return result


def in_thread(box: dict, func, cursor, *args) -> None:
    """Run func(cursor, *args) in a thread: its result or its error goes in `box`."""
    try:
        box["result"] = func(cursor, *args)
    except Exception as exc:  # reported by the caller: the plots are optional, the files are not
        box["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        cursor.close()


def forget_previous_run(out: Path, base: str) -> None:
    """Rerunning a file replaces the tables it produced last time instead of adding copies."""
    record = out / "inputs" / f"{base}.json"
    if not record.is_file():
        return
    try:
        tables = json.loads(record.read_text(encoding="utf-8")).get("tables", [])
    except ValueError:
        return
    for table in tables:
        if isinstance(table, str) and table and "/" not in table and table not in (".", "..", "inputs", "scripts"):
            shutil.rmtree(out / table, ignore_errors=True)


def read_retry(exc: Exception, options: dict) -> tuple[str, str] | None:
    """The reader option that gets past this failure and a line for the log, or None."""
    text = str(exc)
    if "parallel=false" in text and not options.get("serial"):  # quoted line breaks past the sniffed sample
        return "serial", "line breaks inside quoted fields: reading again in one thread"
    if "unicode" in text.lower() and not options.get("latin1"):  # non-UTF-8 bytes past the sniffed sample
        return "latin1", "bytes that are not UTF-8 past the first 256 KB: reading again as latin-1"
    return None


def start_plot_import() -> None:
    """matplotlib loads in the background while DuckDB reads the table (DuckDB releases the GIL;
    started earlier, the import would hold the GIL against the type guess's many small steps)."""
    if "plots" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("plots",), daemon=True).start()


def analyze_tables(con, path: Path, scratch: Path, record: dict, out: Path, base: str,
                   max_file_bytes: int, options: dict, references: list[Path], drop_duplicates: bool) -> None:
    specs = open_tables(con, path, scratch, plate_maps=references, **options)
    unit_table = {}
    for ref in references:
        unit_table.update(read_units_file(ref))
    for spec in specs:
        if not spec.get("skipped"):
            try:
                record["tables"].append(analyze_one(con, spec, record["file"], out, base, max_file_bytes,
                                                    drop_duplicates, unit_table)["table"])
                continue
            except EmptyTable as exc:
                spec["skipped"] = str(exc)
        record["skipped_sheets"].append({"sheet": spec["sheet"], "reason": spec["skipped"]})
        if spec["sheet"] is not None:
            print(f"skipped sheet {spec['sheet']!r} of {record['file']}: {spec['skipped']}", flush=True)


def analyze_file(path: Path, out: Path, base: str, label: str, memory_limit: str = "1GB",
                 threads: int = 2, max_file_bytes: int = 5 * MB, references: list[Path] = (),
                 drop_duplicates: bool = False) -> dict:
    started = time.time()
    record = {"file": label, "name": base, "status": "ok", "reason": "", "tables": [], "skipped_sheets": []}
    forget_previous_run(out, base)
    scratch = out / ".scratch" / base
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    con = None
    try:
        options: dict = {}
        while True:
            con = connect(scratch, memory_limit, threads, path.stat().st_size <= IN_MEMORY_BYTES)
            try:
                analyze_tables(con, path, scratch, record, out, base, max_file_bytes, options, list(references),
                               drop_duplicates)
                break
            except Exception as exc:
                retry = read_retry(exc, options)
                if retry is None:
                    raise
                options[retry[0]] = True
                print(retry[1], flush=True)
                for table in record["tables"]:
                    shutil.rmtree(out / table, ignore_errors=True)
                record.update(tables=[], skipped_sheets=[])
                con.close()
        if not record["tables"]:
            reasons = [s["reason"] for s in record["skipped_sheets"]]
            record.update(status="skipped", reason=reasons[0] if len(reasons) == 1 else "no sheet holds a table")
            if path.suffix.lower() not in (".xlsx", ".xlsm"):
                record["skipped_sheets"] = []
            print(f"skipped {label}: {record['reason']}", flush=True)
    except NotATable as exc:
        record.update(status="skipped", reason=str(exc))
        print(f"skipped {label}: {exc}", flush=True)
    except Exception as exc:  # any failure is reported for this file; the others go on
        record.update(status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
        print(f"failed {label}: {record['reason']}", file=sys.stderr, flush=True)
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if scratch.parent.exists() and not any(scratch.parent.iterdir()):
            scratch.parent.rmdir()
    record["seconds"] = round(time.time() - started, 2)
    (out / "inputs").mkdir(parents=True, exist_ok=True)
    (out / "inputs" / f"{base}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--name", help="base name for this file's tables (default: from the file name)")
    parser.add_argument("--label", help="file name shown in the report (default: the input's name)")
    parser.add_argument("--memory-limit", default=os.environ.get("PLAYBOOK_MEMORY_LIMIT", "1GB"),
                        help="DuckDB memory limit; it spills to disk beyond it (default 1GB)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("PLAYBOOK_THREADS", "2")))
    parser.add_argument("--max-file-mb", type=float, default=5.0, help="preview threshold to note in the report (larger files are not previewed)")
    parser.add_argument("--reference", type=Path, action="append", default=[],
                        help="a reference file (plate map, units table); a plate map joins the plate")
    parser.add_argument("--drop-duplicates", action="store_true",
                        help="remove rows identical to an earlier row (default: keep them and report them)")
    args = parser.parse_args(argv)
    base = args.name or snake_case(args.input.stem) or "table"
    record = analyze_file(args.input, args.out, base, args.label or args.input.name, args.memory_limit,
                          args.threads, int(args.max_file_mb * MB), args.reference, args.drop_duplicates)
    print("RESULT " + json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if record["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
