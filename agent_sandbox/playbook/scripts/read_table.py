"""Read one input file into DuckDB views, one per table, without loading it into memory.

Delimited text is sniffed here rather than by DuckDB, because lab files break
generic sniffers: metadata lines above the header, decimal commas with `;`
delimiters, latin-1 bytes, a UTF-8 BOM, duplicate header names. Every text
column is read as VARCHAR so cleaning can count exactly what it changes.
Excel sheets become temporary CSV files and go through the same path; JSON,
JSON Lines and Parquet are read by DuckDB with nested fields flattened.

Self-contained: depends on duckdb and openpyxl only.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections import Counter
from pathlib import Path

DELIMITERS = [",", ";", "\t", "|"]
SAMPLE_BYTES = 256 * 1024
SAMPLE_LINES = 400
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
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_DEC_COMMA = re.compile(r"^[+-]?\d*,\d+$")
_DEC_DOT = re.compile(r"^[+-]?\d*\.\d+$")


class NotATable(Exception):
    """The file is readable but holds no table; the message says why."""


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


# ---------------------------------------------------------------- text sniffing

def detect_encoding(head: bytes) -> tuple[str, str]:
    """(python codec, duckdb encoding or '' when DuckDB cannot read it directly)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", ""
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            head[: len(head) - cut].decode("utf-8")
            return "utf-8", "utf-8"
        except UnicodeDecodeError:
            continue
    return "latin-1", "latin-1"


def _field_counts(lines: list[str], delim: str) -> list[int]:
    counts = []
    for line in lines:
        if not line.strip():
            counts.append(0)
            continue
        try:
            counts.append(len(next(csv.reader([line], delimiter=delim))))
        except (csv.Error, StopIteration):
            counts.append(0)
    return counts


def _looks_numeric(value: str) -> bool:
    return bool(_NUMBER.match(value.strip()))


def sniff_lines(lines: list[str], delimiters: list[str] = DELIMITERS, single_column_ok: bool = False) -> dict:
    """Find delimiter, header line and the metadata lines above it.

    The table body is where most lines share one field count; the header is the
    first line with that count, and non-blank lines above it are metadata.
    """
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        raise NotATable("the file is empty")
    best = None
    for delim in delimiters:
        counts = _field_counts(lines, delim)
        body = [counts[i] for i in nonblank[len(nonblank) // 3:]] or [counts[i] for i in nonblank]
        width = Counter(body).most_common(1)[0][0]
        start = next(i for i in nonblank if counts[i] == width)
        rest = [counts[i] for i in nonblank if i >= start]
        score = sum(c == width for c in rest) / len(rest)
        # ties go to the delimiter whose table starts earlier: with decimal commas and
        # `;`, a comma split can look just as regular but would lose the header line
        # a ragged table (half its lines regular) still beats reading it as one column
        key = (width >= 2 and score >= 0.8, width >= 2 and score >= 0.5, round(score, 2), -start, width)
        if best is None or key > best[0]:
            best = (key, delim, width, start)
    (regular, ragged, *_), delim, width, start = best
    if not (regular or ragged) and not (single_column_ok and width == 1):
        raise NotATable("no consistent columns found (it does not look like a delimited table)")
    first = next(csv.reader([lines[start]], delimiter=delim))
    has_header = not all(_looks_numeric(v) or not v.strip() for v in first)
    body_values = [v.strip() for line in lines[start + 1:] if line.strip()
                   for v in next(csv.reader([line], delimiter=delim))]
    comma = sum(bool(_DEC_COMMA.match(v)) for v in body_values)
    dot = sum(bool(_DEC_DOT.match(v)) for v in body_values)
    counts = _field_counts(lines, delim)
    body_text = "\n".join(lines[start:])
    quoted_newlines = '"' in body_text and any(
        "\n" in f for row in csv.reader(io.StringIO(body_text), delimiter=delim) for f in row)
    return {
        "quoted_newlines": quoted_newlines,  # DuckDB must then read the file in one thread
        "long_lines": sum(c > width for c in counts[start:]),  # their extra fields are not read
        "delimiter": delim,
        "width": width,
        "header_line": start if has_header else None,
        "data_line": start + 1 if has_header else start,
        "header": [h.strip() for h in first] if has_header else [],
        "metadata": [lines[i].strip() for i in nonblank if i < start],
        "decimal_comma": delim != "," and comma > 0 and comma >= dot,
    }


def sniff_text(path: Path, single_column_ok: bool = False, delimiters: list[str] = DELIMITERS) -> dict:
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise NotATable("binary content, not text")
    codec, duck_encoding = detect_encoding(head)
    text = head.decode(codec, errors="replace")
    lines = text.splitlines()
    if len(head) == SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of a sample may be cut
    info = sniff_lines(lines[:SAMPLE_LINES], delimiters, single_column_ok)
    info.update(encoding=codec, duckdb_encoding=duck_encoding)
    return info


def header_names(info: dict) -> list[str]:
    names = list(info["header"][: info["width"]])
    names += [""] * (info["width"] - len(names))
    return [n if n else f"column_{i + 1}" for i, n in enumerate(names)]


def transcode_to_utf8(path: Path, codec: str, dest: Path) -> Path:
    """Stream a file DuckDB cannot decode (UTF-16) into UTF-8, 1 MB at a time."""
    with open(path, "r", encoding=codec, newline="") as src, open(dest, "w", encoding="utf-8", newline="") as out:
        while chunk := src.read(1024 * 1024):
            out.write(chunk)
    return dest


def delimited_view(con, path: Path, info: dict, view: str, scratch: Path) -> None:
    """Create a VARCHAR view c0..cN over the file body, with explicit options."""
    source, encoding = path, info["duckdb_encoding"]
    if not encoding:
        source, encoding = transcode_to_utf8(path, info["encoding"], scratch / f"{view}.utf8.csv"), "utf-8"
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(info["width"])) + "}"
    con.execute(
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_csv({sql_str(str(source))}, "
        f"auto_detect=false, header=false, skip={info['data_line']}, delim={sql_str(info['delimiter'])}, "
        f"quote='\"', escape='\"', columns={columns}, null_padding=true, strict_mode=false, "
        f"encoding={sql_str(encoding)}, max_line_size=10000000"
        + (", parallel=false" if info.get("quoted_newlines") or info.get("serial") else "") + ")")


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


def open_tables(con, path: Path, scratch: Path, serial: bool = False, latin1: bool = False) -> list[dict]:
    """Create one VARCHAR-or-typed view per table in `path`.

    Returns [{view, sheet, names, reader}] where `names` are the original column
    names and `reader` the options used (recorded in the profile for reproducibility).
    Sheets that are empty or hold no table come back with `skipped` set.
    The views are lazy: a problem past the sniffed sample surfaces when they are
    first read in full, and the caller reads again with `serial` (quoted line
    breaks) or `latin1` (bytes that are not UTF-8) set.
    """
    kind = file_kind(path)
    if kind == "delimited":
        info = sniff_text(path, single_column_ok=path.suffix.lower() in {".csv", ".tsv"})
        info["serial"] = serial
        if latin1 and info["duckdb_encoding"] == "utf-8":
            info.update(encoding="latin-1", duckdb_encoding="latin-1", encoding_note="not valid UTF-8 past the first 256 KB")
        delimited_view(con, path, info, "raw_0", scratch)
        return [{"view": "raw_0", "sheet": None, "names": header_names(info), "reader": {"format": "delimited", **info}}]
    if kind == "excel":
        tables = []
        for index, (sheet, csv_path) in enumerate(excel_sheets_to_csv(path, scratch)):
            if csv_path is None:
                tables.append({"sheet": sheet, "skipped": "the sheet is empty"})
                continue
            try:
                info = sniff_text(csv_path, single_column_ok=True, delimiters=[","])
                info["serial"] = serial
                delimited_view(con, csv_path, info, f"raw_{index}", scratch)
            except NotATable as exc:
                tables.append({"sheet": sheet, "skipped": str(exc)})
                continue
            info.update(encoding="xlsx", duckdb_encoding="utf-8")
            tables.append({"view": f"raw_{index}", "sheet": sheet, "names": header_names(info),
                           "reader": {"format": "excel", "sheet": sheet, **info}})
        return tables
    if kind == "json":
        source = f"read_json({sql_str(str(path))}, format='auto', maximum_object_size=268435456)"
        names, metadata = flat_view(con, source, "raw_0")
        return [{"view": "raw_0", "sheet": None, "names": names, "reader": {"format": "json", "metadata": metadata}}]
    source = f"read_parquet({sql_str(str(path))})"
    names, metadata = flat_view(con, source, "raw_0")
    return [{"view": "raw_0", "sheet": None, "names": names, "reader": {"format": "parquet", "metadata": metadata}}]
