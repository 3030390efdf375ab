"""Read one input file into DuckDB views, one per table, without loading it into memory.

Delimited text is sniffed here rather than by DuckDB, because lab files break
generic sniffers: metadata lines above the header, a units row under it,
footers after the data (`End Time:`, signatures), decimal commas with `;`
delimiters, latin-1 bytes, a UTF-8 BOM, duplicate header names, plate grids.
Every text column is read as VARCHAR so cleaning can count exactly what it
changes. Excel sheets become temporary CSV files and go through the same path;
JSON, JSON Lines and Parquet are read by DuckDB with nested fields flattened.
Instrument layouts (plate grids, wells as rows) are rewritten by layout.py
into a temporary CSV of one row per well or per time point first.

Self-contained: depends on duckdb, openpyxl and the sibling common.py, layout.py, sniff.py.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from pathlib import Path

from common import sql_ident, sql_str
from layout import grids_to_rows, looks_transposed, read_plate_map, split, transpose, write_rows
from sniff import NotATable, sniff_text

LAYOUT_BYTES = 20 * 1024 * 1024  # layouts rewritten in Python (plate grids, wells as rows) are smaller than this
TEXT_EXT = {".csv", ".tsv", ".txt", ".dat", ".tab", ".psv", ".asc", ".prn", ""}
EXCEL_EXT = {".xlsx", ".xlsm"}
JSON_EXT = {".json", ".jsonl", ".ndjson"}
PARQUET_EXT = {".parquet", ".pq"}
# Files that are documents or media, never tables: skipped without reading them.
NOT_TABLE_EXT = {
    ".md": "Markdown text", ".rst": "reStructuredText", ".pdf": "a PDF document",
    ".doc": "a Word document", ".docx": "a Word document", ".png": "an image",
    ".jpg": "an image", ".jpeg": "an image", ".gif": "an image", ".tif": "an image",
    ".tiff": "an image", ".svg": "an image", ".zip": "an archive", ".gz": "an archive",
    ".py": "source code", ".r": "source code", ".html": "a web page", ".xls": "a legacy .xls workbook (save it as .xlsx)",
}
# ---------------------------------------------------------------- delimited text

def header_names(info: dict) -> list[str]:
    names = list(info["header"][: info["width"]])
    names += [""] * (info["width"] - len(names))
    return [n if n else f"column_{i + 1}" for i, n in enumerate(names)]


def transcode_to_utf8(path: Path, codec: str, dest: Path) -> Path:
    """Stream a file DuckDB cannot decode (UTF-16) into UTF-8, 1 MB at a time."""
    with open(path, encoding=codec, newline="") as src, open(dest, "w", encoding="utf-8", newline="") as out:
        while chunk := src.read(1024 * 1024):
            out.write(chunk)
    return dest


def footer_filter(info: dict) -> str:
    """A WHERE clause that leaves out the footer lines, matched cell by cell as DuckDB reads them
    (a rewritten layout left them out already)."""
    if info.get("layout"):
        return ""
    conditions = []
    for line in info.get("footer", []):
        cells = (split(line, info["delimiter"]) + [""] * info["width"])[: info["width"]]
        conditions.append("NOT (" + " AND ".join(f"c{k} IS NULL" if cell == "" else f"c{k} IS NOT DISTINCT FROM {sql_str(cell)}"
                                                 for k, cell in enumerate(cells)) + ")")
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def delimited_view(con, path: Path, info: dict, view: str, scratch: Path, types: dict[int, str] | None = None) -> None:
    """Create a view c0..cN over the file body, with explicit options: VARCHAR columns, or
    the SQL `types` given by column index (the reader then fails on a cell it cannot convert)."""
    source, encoding = path, info["duckdb_encoding"]
    if not encoding:
        source, encoding = transcode_to_utf8(path, info["encoding"], scratch / f"{view}.utf8.csv"), "utf-8"
    columns = "{" + ", ".join(f"'c{i}': {sql_str((types or {}).get(i, 'VARCHAR'))}" for i in range(info["width"])) + "}"
    con.execute(
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_csv({sql_str(str(source))}, "
        f"auto_detect=false, header=false, skip={info['data_line']}, delim={sql_str(info['delimiter'])}, "
        f"quote='\"', escape='\"', columns={columns}, null_padding=true, strict_mode=false, "
        f"encoding={sql_str(encoding)}, max_line_size=10000000"
        + (", parallel=false" if info.get("quoted_newlines") or info.get("serial") else "") + ")"
        + footer_filter(info))


def rewrite_layout(path: Path, info: dict, scratch: Path, name: str, plate_map: dict) -> tuple[Path, dict]:
    """A plate grid as one row per well, or wells-as-rows turned to one row per time point:
    written to a CSV in the scratch folder and sniffed again. Other files come back as they are."""
    lines, delim = info.get("lines"), info.get("delimiter", ",")
    if info.get("layout") == "plate grid":
        rows = grids_to_rows(info["grids"], plate_map)
        found = {"layout": "plate grid", "grids": [{k: g[k] for k in ("label", "rows", "columns")} for g in info["grids"]],
                 "metadata": info["metadata"], "footer": info["footer"],
                 "plate_map_columns": [c for c in plate_map if c not in {g["label"] for g in info["grids"]}]}
    elif lines and info.get("header") and path.stat().st_size <= LAYOUT_BYTES:
        footer = set(info.get("footer", []))
        body = [split(line, delim) for line in lines[info["data_line"]:] if line.strip() and line not in footer]
        if not looks_transposed(info["header"], [r[0] for r in body if r]):
            return path, info
        rows = transpose([info["header"]] + body)
        found = {"layout": "wells as rows", "metadata": info["metadata"], "footer": info.get("footer", [])}
    else:
        return path, info
    dest = write_rows(rows, scratch / f"{name}.layout.csv", delim)
    new = sniff_text(dest, single_column_ok=True, delimiters=[delim])
    new.update(found, encoding=info["encoding"], source_delimiter=delim)
    return dest, new


def reader_notes(reader: dict) -> list[dict]:
    """Audit entries for what reading changed: layouts, units rows, footers."""
    notes = []
    if reader.get("layout") == "plate grid":
        grids = reader["grids"]
        notes.append({"action": "plate grid read as one row per well", "column": None, "rows": None, "cells": None,
                      "detail": f"{len(grids)} grid(s) of {grids[0]['rows']} x {grids[0]['columns']} wells ("
                                + ", ".join(g["label"] for g in grids) + "): columns well, row, column and one per grid"})
    if reader.get("layout") == "wells as rows":
        notes.append({"action": "wells as rows turned to columns", "column": None, "rows": None, "cells": None,
                      "detail": "the file lists one well per line and one time point per column; each time point "
                                "is now a row and each well a column"})
    if reader.get("plate_map_columns"):
        notes.append({"action": "plate map joined", "column": None, "rows": None, "cells": None,
                      "detail": f"columns {', '.join(reader['plate_map_columns'])} from {reader.get('plate_map_source')}"})
    if reader.get("units"):
        shown = ", ".join(u for u in reader["units"] if u)
        notes.append({"action": "units row read as units", "column": None, "rows": None, "cells": None,
                      "detail": f"line {reader['units_line'] + 1} ({shown}) holds units, kept as each column's unit, "
                                "not a data row"})
    if reader.get("footer"):
        notes.append({"action": "footer kept as metadata", "column": None, "rows": len(reader["footer"]), "cells": None,
                      "detail": "lines after the table, not data rows: " + " | ".join(reader["footer"][:3])
                                + (" ..." if len(reader["footer"]) > 3 else "")})
    return notes


# ---------------------------------------------------------------- excel

def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def excel_sheets_to_csv(path: Path, scratch: Path) -> list[tuple[str, Path | None]]:
    """Each sheet as a temporary UTF-8 CSV (trailing empty cells dropped); None if empty."""
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheets = []
    try:
        for index, sheet in enumerate(book.worksheets):
            dest = scratch / f"sheet_{index}.csv"
            rows = 0
            with open(dest, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                for row in sheet.iter_rows(values_only=True):
                    cells = [_cell_text(v) for v in row]
                    while cells and not cells[-1].strip():
                        cells.pop()
                    writer.writerow(cells)
                    rows += bool(cells)
            sheets.append((sheet.title, dest if rows else None))
    finally:
        book.close()
    return sheets


# ---------------------------------------------------------------- json and parquet

def _flatten(type_, expr: str, name: str) -> list[tuple[str, str]]:
    """(select expression, column name) pairs; structs become parent.child columns,
    lists and maps become JSON text."""
    if type_.id == "struct":
        out = []
        for child, child_type in type_.children:
            out += _flatten(child_type, f"struct_extract({expr}, {sql_str(child)})", f"{name}.{child}")
        return out
    if type_.id in ("list", "map", "array", "union"):
        return [(f"CAST(to_json({expr}) AS VARCHAR)", name)]
    return [(expr, name)]


def flat_view(con, source_sql: str, view: str) -> tuple[list[str], list[str]]:
    """A view with nested fields flattened; returns the original (dotted) names and
    the metadata fields of a document that wraps its records."""
    metadata: list[str] = []
    rel = con.sql(f"SELECT * FROM {source_sql}")
    lists = [name for name, t in zip(rel.columns, rel.types) if t.id == "list"]
    if len(lists) == 1 and (len(rel.columns) == 1 or con.execute(f"SELECT count(*) FROM {source_sql}").fetchone()[0] == 1):
        # one document holding one array of records (beside some metadata fields): a row per record
        others = [c for c in rel.columns if c != lists[0]]
        if others:
            row = con.execute(f"SELECT {', '.join(sql_ident(c) for c in others)} FROM {source_sql}").fetchone()
            metadata += [f"{name}: {value}" for name, value in zip(others, row)]
        source_sql = f"(SELECT unnest({sql_ident(lists[0])}) AS record FROM {source_sql})"
        rel = con.sql(f"SELECT * FROM {source_sql}")
    pairs = []
    for name, type_ in zip(rel.columns, rel.types):
        pairs += _flatten(type_, sql_ident(name), name)
    if len(pairs) == 1 and pairs[0][1] == "record":
        pairs = [(e, "value") for e, _ in pairs]
    pairs = [(e, n[len("record."):] if n.startswith("record.") else n) for e, n in pairs]
    select = ", ".join(f"{expr} AS c{i}" for i, (expr, _) in enumerate(pairs))
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {select} FROM {source_sql}")
    return [n for _, n in pairs], metadata


# ---------------------------------------------------------------- entry point

def file_kind(path: Path) -> str:
    """'delimited' | 'excel' | 'json' | 'parquet'; raises NotATable otherwise."""
    ext = path.suffix.lower()
    if ext in NOT_TABLE_EXT:
        raise NotATable(f"{NOT_TABLE_EXT[ext]}, not a table")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise NotATable("the file is empty")
    if head.startswith(b"PAR1") or ext in PARQUET_EXT:
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        if ext in EXCEL_EXT or ext == "":
            return "excel"
        raise NotATable("a zip archive, not a table")
    if ext in EXCEL_EXT:
        raise NotATable("not a valid .xlsx workbook")
    if ext in JSON_EXT or head.lstrip(codecs.BOM_UTF8).lstrip()[:1] in (b"{", b"["):
        return "json"
    return "delimited"


def delimited_table(con, path: Path, info: dict, view: str, scratch: Path, plate_map: dict, map_source: str) -> dict:
    if info.get("layout") == "plate grid" or info.get("lines"):
        path, info = rewrite_layout(path, info, scratch, view, plate_map)
    if plate_map and info.get("layout") != "plate grid":
        info["plate_map"] = {**plate_map, **info.get("plate_map", {})}
    if plate_map:
        info["plate_map_source"] = map_source
    delimited_view(con, path, info, view, scratch)
    info.pop("lines", None)
    typed_view = None
    if info["duckdb_encoding"] and not info.get("decimal_comma") and not info.get("footer"):
        def typed_view(types: dict[int, str]) -> str:
            """The same file with some columns read as typed values, which is faster than
            parsing text (cleaning falls back to text when a cell does not convert)."""
            delimited_view(con, path, info, f"{view}_typed", scratch, types)
            return f"{view}_typed"
    return {"view": view, "names": header_names(info), "notes": reader_notes(info), "typed_view": typed_view}, info


def open_tables(con, path: Path, scratch: Path, serial: bool = False, latin1: bool = False,
                plate_maps: list[Path] = ()) -> list[dict]:
    """Create one VARCHAR-or-typed view per table in `path`.

    Returns [{view, sheet, names, reader, notes}] where `names` are the original column
    names, `reader` the options used (recorded in the profile for reproducibility) and
    `notes` audit entries for what reading changed. `plate_maps` are reference files
    that may name the wells' samples. Sheets that are empty or hold no table come
    back with `skipped` set. The views are lazy: a problem past the sniffed sample
    surfaces when they are first read in full, and the caller reads again with
    `serial` (quoted line breaks) or `latin1` (bytes that are not UTF-8) set.
    """
    plate_map, map_source = {}, ""
    for ref in plate_maps:
        found = read_plate_map(ref)
        if found:
            plate_map, map_source = found, ref.name
            break
    kind = file_kind(path)
    if kind == "delimited":
        info = sniff_text(path, single_column_ok=path.suffix.lower() in {".csv", ".tsv"})
        info["serial"] = serial
        if latin1 and info["duckdb_encoding"] == "utf-8":
            info.update(encoding="latin-1", duckdb_encoding="latin-1", encoding_note="not valid UTF-8 past the first 256 KB")
        spec, info = delimited_table(con, path, info, "raw_0", scratch, plate_map, map_source)
        return [dict(spec, sheet=None, reader={"format": "delimited", **info})]
    if kind == "excel":
        tables = []
        for index, (sheet, csv_path) in enumerate(excel_sheets_to_csv(path, scratch)):
            if csv_path is None:
                tables.append({"sheet": sheet, "skipped": "the sheet is empty"})
                continue
            try:
                info = sniff_text(csv_path, single_column_ok=True, delimiters=[","])
                info["serial"] = serial
                spec, info = delimited_table(con, csv_path, info, f"raw_{index}", scratch, plate_map, map_source)
            except NotATable as exc:
                tables.append({"sheet": sheet, "skipped": str(exc)})
                continue
            info.update(encoding="xlsx", duckdb_encoding="utf-8")
            tables.append(dict(spec, sheet=sheet, reader={"format": "excel", "sheet": sheet, **info}))
        return tables
    if kind == "json":
        source = f"read_json({sql_str(str(path))}, format='auto', maximum_object_size=268435456)"
        names, metadata = flat_view(con, source, "raw_0")
        return [{"view": "raw_0", "sheet": None, "names": names, "notes": [],
                 "reader": {"format": "json", "metadata": metadata}}]
    source = f"read_parquet({sql_str(str(path))})"
    names, metadata = flat_view(con, source, "raw_0")
    return [{"view": "raw_0", "sheet": None, "names": names, "notes": [],
             "reader": {"format": "parquet", "metadata": metadata}}]
