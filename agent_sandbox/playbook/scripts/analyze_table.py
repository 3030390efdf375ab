"""Analyse one input file: read, clean, profile, plot and save every table in it.

    python analyze_table.py INPUT --out RESULTS --name NAME [--label SHOWN_NAME]

For each table (an Excel file has one per sheet) it writes, under RESULTS:
    <table>/<table>.csv, <table>/<table>.parquet      the cleaned table
    <table>/<table>.profile.json                     profile, reader options and cleaning audit
    <table>/plots/<table>_*.png                      plots
and always inputs/<NAME>.json: what happened to the file (ok, skipped, failed).
The last line printed is `RESULT {...}` for whoever drives this script.

Exit code 0 when the file was analysed or skipped as not a table, 1 when it failed.
Work happens in DuckDB with a memory limit: in memory for inputs up to 128 MB, in a database
file under RESULTS/.scratch above that, so files far larger than memory are processed; the
scratch is removed.
Self-contained: needs duckdb, openpyxl, Pillow and the sibling scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clean_table import EmptyTable, clean_table, snake_case  # noqa: E402
from plot_table import plot_table  # noqa: E402
from profile_table import profile_table  # noqa: E402
from read_table import NotATable, open_tables, sql_str  # noqa: E402

MB = 1024 * 1024
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


def save_table(con, out: Path, name: str, max_file_bytes: int) -> tuple[dict, list[str]]:
    folder = out / name
    csv_path, parquet_path = folder / f"{name}.csv", folder / f"{name}.parquet"
    con.execute(f"COPY clean TO {sql_str(str(csv_path))} (FORMAT CSV, HEADER)")
    con.execute(f"COPY clean TO {sql_str(str(parquet_path))} (FORMAT PARQUET, COMPRESSION ZSTD)")
    files, notes = {}, []
    for kind, path in (("csv", csv_path), ("parquet", parquet_path)):
        size = path.stat().st_size
        files[kind] = {"path": f"{name}/{path.name}", "size": size}
        if size > max_file_bytes:
            notes.append(f"the cleaned {kind.upper()} is {size / MB:.1f} MB, over the {max_file_bytes / MB:.0f} MB "
                         f"preview threshold: it comes back for download, not previewed, within the job's output limit"
                         + ("; the Parquet file holds the same data, compressed" if kind == "csv" else ""))
    return files, notes


def analyze_one(con, spec: dict, source: str, out: Path, base: str, max_file_bytes: int) -> dict:
    started = time.time()
    name = table_name(out, base, spec["sheet"])
    (out / name).mkdir(parents=True)
    reader = spec["reader"]
    print(f"[{name}] reading {source}" + (f" sheet {spec['sheet']!r}" if spec["sheet"] else "")
          + (f" (delimiter {reader['delimiter']!r}, encoding {reader['encoding']}, "
             f"data from line {reader['data_line'] + 1})" if reader.get("delimiter") else f" ({reader['format']})"), flush=True)
    try:
        cleaned = clean_table(con, spec["view"], spec["names"], "clean", reader.get("decimal_comma", False))
    except Exception:  # an empty table, or a read to retry with other options: leave nothing behind
        shutil.rmtree(out / name)
        raise
    print(f"[{name}] cleaned: {cleaned['rows_before']} -> {cleaned['rows_after']} rows, "
          f"{cleaned['columns_before']} -> {cleaned['columns_after']} columns, "
          f"{len(cleaned['audit'])} audit entries", flush=True)
    profile = profile_table(con, "clean", cleaned["columns"])
    plots = plot_table(con, "clean", profile, out / name / "plots", name)
    files, notes = save_table(con, out, name, max_file_bytes)
    if reader.get("long_lines"):
        notes.append(f"{reader['long_lines']} of the first lines have more fields than the header; "
                     f"their extra fields were not read")
    if profile["approximate"]:
        notes.append("distinct counts and quartiles are approximate (more than 1,000,000 rows)")
    print(f"[{name}] profiled {profile['columns']} columns, {len(plots)} plots, "
          f"CSV {files['csv']['size'] / MB:.2f} MB, Parquet {files['parquet']['size'] / MB:.2f} MB", flush=True)
    result = {
        "table": name, "source": source, "sheet": spec["sheet"],
        "reader": {k: v for k, v in reader.items() if k not in ("header", "metadata")},
        "metadata": reader.get("metadata", []),
        "rows_before": cleaned["rows_before"], "columns_before": cleaned["columns_before"],
        "rows_after": cleaned["rows_after"], "columns_after": cleaned["columns_after"],
        "empty_rows_dropped": cleaned["empty_rows"], "duplicate_rows_dropped": cleaned["duplicate_rows"],
        "approximate": profile["approximate"], "columns": profile["column_profiles"],
        "audit": cleaned["audit"], "plots": [dict(p, path=f"{name}/{p['path']}") for p in plots],
        "files": files, "notes": notes, "seconds": round(time.time() - started, 2),
    }
    profile_path = out / name / f"{name}.profile.json"
    profile_path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    con.execute("DROP TABLE clean")
    return result


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


def analyze_tables(con, path: Path, scratch: Path, record: dict, out: Path, base: str,
                   max_file_bytes: int, options: dict) -> None:
    for spec in open_tables(con, path, scratch, **options):
        if not spec.get("skipped"):
            try:
                record["tables"].append(analyze_one(con, spec, record["file"], out, base, max_file_bytes)["table"])
                continue
            except EmptyTable as exc:
                spec["skipped"] = str(exc)
        record["skipped_sheets"].append({"sheet": spec["sheet"], "reason": spec["skipped"]})
        if spec["sheet"] is not None:
            print(f"skipped sheet {spec['sheet']!r} of {record['file']}: {spec['skipped']}", flush=True)


def analyze_file(path: Path, out: Path, base: str, label: str, memory_limit: str = "1GB",
                 threads: int = 2, max_file_bytes: int = 5 * MB) -> dict:
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
                analyze_tables(con, path, scratch, record, out, base, max_file_bytes, options)
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
    args = parser.parse_args(argv)
    base = args.name or snake_case(args.input.stem) or "table"
    record = analyze_file(args.input, args.out, base, args.label or args.input.name, args.memory_limit,
                          args.threads, int(args.max_file_mb * MB))
    print("RESULT " + json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if record["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
