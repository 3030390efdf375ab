"""Sniff a delimited text file: encoding, delimiter, header line, metadata above it,
a units row under it, a footer after the data, decimal commas, plate grids.

Lab files break generic sniffers, so this reads a sample of lines and decides
from their field counts; when the whole file fits the sample, its lines are
kept for layout.py. Self-contained: standard library and the sibling layout.py, units.py.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from pathlib import Path

from layout import find_grids, grid_cells, split, text_grid_map
from units import unit_row

DELIMITERS = [",", ";", "\t", "|"]
SAMPLE_BYTES = 256 * 1024
SAMPLE_LINES = 400
TAIL_BYTES = 64 * 1024       # read from the end of a big file to find a footer
MAX_FOOTER_LINES = 200
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_DEC_COMMA = re.compile(r"^[+-]?\d*,\d+$")
_DEC_DOT = re.compile(r"^[+-]?\d*\.\d+$")
# A footer's first cell: a label such as "End Time:", "~End", "Signature", "Printed on ..."
_FOOTER_WORD = re.compile(r"^(~?end\b|signature|signed|printed|page \d|instrument|software|user\b|comments?\b|#)", re.I)


class NotATable(Exception):
    """The file is readable but holds no table; the message says why."""


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


def read_units_row(lines: list[str], info: dict) -> None:
    """A line of units under the header (lb, in, bpm) is read as units, not as a row."""
    if info["header_line"] is None:
        return
    delim, width = info["delimiter"], info["width"]
    k = next((i for i in range(info["data_line"], len(lines)) if lines[i].strip()), None)
    if k is None:
        return
    below = [split(lines[i], delim) for i in range(k + 1, min(len(lines), k + 51)) if lines[i].strip()]
    numeric = []
    for c in range(width):
        values = [r[c].strip() for r in below if c < len(r) and r[c].strip()]
        numeric.append(bool(values) and sum(_looks_numeric(v) for v in values) >= 0.8 * len(values))
    units = unit_row(split(lines[k], delim), numeric) if below else None
    if units:
        info.update(units=units, units_line=k, units_text=lines[k].strip(), data_line=k + 1)


def footer_lines(lines: list[str], delim: str, width: int, after: int) -> list[str]:
    """Trailing lines after the table that are not rows: labels such as `End Time:` with
    fewer fields than the table, set apart by a blank line or named like a footer."""
    found = []
    for i in reversed([i for i, line in enumerate(lines) if line.strip() and i >= after]):
        cells = [c.strip() for c in split(lines[i], delim)]
        first = cells[0] if cells else ""
        if not first or _looks_numeric(first) or len(found) >= MAX_FOOTER_LINES:
            break
        if not (sum(bool(c) for c in cells) < width or first.endswith(":")):
            break
        found.append(i)
    if not found:
        return []
    start = min(found)
    head = split(lines[start], delim)[0].strip()
    if (start > 0 and not lines[start - 1].strip()) or head.endswith(":") or _FOOTER_WORD.match(head):
        return [lines[i] for i in sorted(found)]
    return []


def read_tail(path: Path, codec: str) -> list[str]:
    """The last lines of a big file (the first, maybe cut, dropped)."""
    if codec.startswith("utf-16"):
        return []
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_BYTES))
        return f.read().decode(codec, errors="replace").splitlines()[1:]


def inside_grid(info: dict, grids: list[dict]) -> bool:
    """The sniffed table is itself a plate grid (its header or first row is a grid's)."""
    first = info["header_line"] if info["header_line"] is not None else info["data_line"]
    return any(g["lines"][0] <= first <= g["lines"][1] for g in grids)


def body_cells(info: dict, lines: list[str]) -> int:
    rows = [line for line in lines[info["data_line"]:] if line.strip()]
    return info["width"] * max(0, len(rows) - len(info.get("footer", [])))


def sniff_text(path: Path, single_column_ok: bool = False, delimiters: list[str] = DELIMITERS) -> dict:
    """Reader options for a text file. When the whole file fits the sample, its lines are kept
    under "lines" (for layouts) and plate grids, if they hold most of it, under "grids"."""
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise NotATable("binary content, not text")
    codec, duck_encoding = detect_encoding(head)
    text = head.decode(codec, errors="replace")
    lines = text.splitlines()
    complete = len(head) < SAMPLE_BYTES
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the last line of a sample may be cut
    try:
        info = sniff_lines(lines[:SAMPLE_LINES], delimiters, single_column_ok)
    except NotATable:
        if not complete:
            raise
        info = None
    if info is not None:
        read_units_row(lines, info)
        tail = lines if complete else read_tail(path, codec)
        info["footer"] = footer_lines(tail, info["delimiter"], info["width"], info["data_line"] if complete else 0)
    grids, grid_delim = [], ""
    if complete:
        for delim in ([info["delimiter"]] if info else []) + [d for d in delimiters if not info or d != info["delimiter"]]:
            grids = find_grids(lines, delim)
            if grids:
                grid_delim = delim
                break
    if grids and (info is None or grid_cells(grids) >= body_cells(info, lines) or inside_grid(info, grids)):
        before, after = grid_metadata(lines, grids)
        info = {"layout": "plate grid", "delimiter": grid_delim, "grids": grids, "metadata": before, "footer": after}
    elif info is None:
        raise NotATable("no consistent columns found (it does not look like a delimited table)")
    elif grids:  # grids of sample names above a table of wells: the plate's map
        info["plate_map"] = text_grid_map(grids)
    info.update(encoding=codec, duckdb_encoding=duck_encoding, lines=lines if complete else None)
    return info


def grid_metadata(lines: list[str], grids: list[dict]) -> tuple[list[str], list[str]]:
    """The lines around plate grids: (above the last grid, after it), blank lines left out."""
    inside = {k for g in grids for k in range(g["lines"][0], g["lines"][1] + 1)}
    last = max(g["lines"][1] for g in grids)
    kept = [(k, line.strip()) for k, line in enumerate(lines) if line.strip() and k not in inside]
    return [t for k, t in kept if k < last], [t for k, t in kept if k > last]
