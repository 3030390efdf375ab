"""Instrument layouts: plate grids, wells as rows, plate maps.

Plate readers (Tecan, BioTek Gen5, ...) export a plate as a grid: a header of
column numbers 1..12 (or 1..24), then one line per plate row A..H (or A..P).
Such a grid becomes one row per well (`well`, `row`, `column`, one column per
grid label: a reading such as `600`, or a layout of sample names). Several
datasets of one plate (Gen5 writes each row once per dataset, with the
dataset's name last) become several columns; the same label again is another
plate. Kinetic reads exported with wells as rows and cycles as columns
(`Cycle Nr.`, `Time [s]`, `A1` ...) are turned so each time point is a row.
A plate map (a grid of sample names, or a table with a `well` column) names
the wells' samples; it joins the plate.

Self-contained: standard library only.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

WELL = re.compile(r"^([A-Za-z]{1,2})0?([1-9][0-9]?)$")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_CORNERS = {"", "<>", "well", "wells", "row", "rows", "r/c", "plate", "#"}
_TIME_LABEL = re.compile(r"^(cycle|kinetic|time|temp|t°|t\s)", re.IGNORECASE)
MAX_WELLS_ROWS = 32


def row_letters(n: int) -> list[str]:
    letters = [chr(ord("A") + i) for i in range(min(n, 26))]
    return letters + ["A" + chr(ord("A") + i) for i in range(max(0, n - 26))]


def split(line: str, delim: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delim))
    except (csv.Error, StopIteration):
        return []


def well_id(text: str) -> str | None:
    """'A1', 'a01', 'H12' -> 'A1', 'H12'; None for anything else."""
    match = WELL.match(text.strip())
    if not match or match.group(1).upper() not in row_letters(MAX_WELLS_ROWS) or int(match.group(2)) > 48:
        return None
    return f"{match.group(1).upper()}{int(match.group(2))}"


def _header_columns(cells: list[str]) -> int:
    """N when the cells after the corner are 1, 2, ..., N (N >= 3), else 0."""
    values = [c.strip() for c in cells]
    while values and not values[-1]:
        values.pop()
    if len(values) < 4 or _NUMBER.match(values[0]):
        return 0
    numbers = values[1:]
    return len(numbers) if numbers == [str(k) for k in range(1, len(numbers) + 1)] else 0


def _label_above(lines: list[str], index: int, delim: str, corner: str) -> str:
    """A grid's name: its corner cell, else the nearest line above that is one word or phrase
    (`Layout`, `Absorbance`, `Read 1:600`), not a `Key: value` setting, within a few lines."""
    if corner and corner.lower() not in _CORNERS:
        return corner
    for k in range(index - 1, max(-1, index - 12), -1):
        if _header_columns(split(lines[k], delim)):
            break  # the grid above: this one has no name of its own
        cells = [c.strip() for c in split(lines[k], delim) if c.strip()]
        if len(cells) == 1 and not re.search(r":\s*\S", cells[0]) and len(cells[0]) <= 40:
            return cells[0].rstrip(":")
    return ""


def find_grids(lines: list[str], delim: str) -> list[dict]:
    """Plate grids in `lines`: [{label, rows, columns, values: {well: text}, lines: (first, last)}]."""
    grids: list[dict] = []
    i = 0
    while i < len(lines):
        cells = split(lines[i], delim)
        ncols = _header_columns(cells)
        if not ncols:
            i += 1
            continue
        letters, datasets, j, current = row_letters(MAX_WELLS_ROWS), {}, i + 1, None
        nrows = 0
        while j < len(lines):
            row = [c.strip() for c in split(lines[j], delim)]
            head = row[0] if row else ""
            if nrows < len(letters) and head.upper() == letters[nrows]:
                current, nrows = letters[nrows], nrows + 1
            elif not (head == "" and current and any(row[1:ncols + 1])):
                break
            label = row[ncols + 1] if len(row) > ncols + 1 and row[ncols + 1] else ""
            values = (row[1:ncols + 1] + [""] * ncols)[:ncols]
            target = datasets.setdefault(label, {})
            for c, value in enumerate(values, start=1):
                target[f"{current}{c}"] = value
            j += 1
        if nrows >= 2:
            above = _label_above(lines, i, delim, cells[0].strip())
            for label, values in datasets.items():
                label = label or above or "value"
                label = f"read {label}" if _NUMBER.match(label) else label  # Gen5 names a read by its wavelength
                grids.append({"label": label, "rows": nrows, "columns": ncols,
                              "values": values, "lines": (i, j - 1)})
            i = j
        else:
            i += 1
    return grids


def grid_cells(grids: list[dict]) -> int:
    return sum(len(g["values"]) for g in grids)


def is_numeric_grid(grid: dict) -> bool:
    values = [v for v in grid["values"].values() if v]
    return bool(values) and sum(bool(_NUMBER.match(v)) for v in values) >= 0.5 * len(values)


def text_grid_map(grids: list[dict]) -> dict[str, dict[str, str]]:
    """A plate map from the grids of sample names among `grids`: {label: {well: name}}."""
    return {g["label"]: {w: v for w, v in g["values"].items() if v} for g in grids if not is_numeric_grid(g)}


def grids_to_rows(grids: list[dict], plate_map: dict[str, dict[str, str]] | None = None) -> list[list[str]]:
    """One row per well (per plate when a label repeats), one column per label, then the plate map's."""
    labels, plates = [], []  # labels in first-seen order; plates[k] = {label: values}
    for g in grids:
        if g["label"] not in labels:
            labels.append(g["label"])
        k = next((k for k, p in enumerate(plates) if g["label"] not in p), None)
        if k is None:
            plates.append({})
            k = len(plates) - 1
        plates[k][g["label"]] = g["values"]
    extra = [name for name in (plate_map or {}) if name not in labels]
    nrows = max(g["rows"] for g in grids)
    ncols = max(g["columns"] for g in grids)
    header = (["plate"] if len(plates) > 1 else []) + ["well", "row", "column"] + labels + extra
    out = [header]
    for k, plate in enumerate(plates, start=1):
        for letter in row_letters(nrows):
            for c in range(1, ncols + 1):
                well = f"{letter}{c}"
                cells = [plate.get(label, {}).get(well, "") for label in labels]
                cells += [plate_map[name].get(well, "") for name in extra]
                if any(cells[: len(labels)]):
                    out.append(([str(k)] if len(plates) > 1 else []) + [well, letter, str(c)] + cells)
    return out


def looks_transposed(header: list[str], first_cells: list[str]) -> bool:
    """Wells as rows and time points as columns: the header after its first cell is
    numbers (cycles, times) and the first column names wells or kinetic variables."""
    rest = [h.strip() for h in header[1:] if h.strip()]
    if len(rest) < 3 or not all(_NUMBER.match(h) for h in rest) or not first_cells:
        return False
    wells = sum(well_id(c) is not None for c in first_cells)
    kinetic = sum(bool(_TIME_LABEL.match(c.strip())) for c in first_cells)
    return wells >= 3 and wells + kinetic >= 0.8 * len(first_cells)


def transpose(rows: list[list[str]]) -> list[list[str]]:
    width = max(len(r) for r in rows)
    padded = [r + [""] * (width - len(r)) for r in rows]
    return [list(col) for col in zip(*padded)]


def write_rows(rows: list[list[str]], dest: Path, delim: str) -> Path:
    with open(dest, "w", encoding="utf-8", newline="") as out:
        csv.writer(out, delimiter=delim, lineterminator="\n").writerows(rows)
    return dest


def read_plate_map(path: Path, max_bytes: int = 1024 * 1024) -> dict[str, dict[str, str]]:
    """A plate map from a reference file: grids of names, or a table with a `well` column.
    {column name: {well: value}}; empty when the file is none of these."""
    if path.stat().st_size > max_bytes:
        return {}
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            buf = io.StringIO()
            for sheet in book.worksheets:
                csv.writer(buf).writerows([["" if v is None else str(v) for v in row]
                                           for row in sheet.iter_rows(values_only=True)])
            book.close()
            text, delims = buf.getvalue(), [","]
        except Exception:  # not a readable workbook: not a plate map
            return {}
    elif path.suffix.lower() in (".csv", ".tsv", ".txt", ""):
        text, delims = path.read_bytes().decode("utf-8-sig", errors="replace"), [",", "\t", ";"]
    else:
        return {}
    lines = text.splitlines()
    for delim in delims:
        found = text_grid_map(find_grids(lines, delim))
        if found:
            return found
        rows = [split(line, delim) for line in lines if line.strip()]
        if len(rows) > 1 and len(rows[0]) >= 2:
            header = [h.strip().lower() for h in rows[0]]
            if "well" in header:
                w = header.index("well")
                out = {rows[0][k].strip(): {} for k in range(len(header)) if k != w and rows[0][k].strip()}
                for r in rows[1:]:
                    well = well_id(r[w]) if len(r) > w else None
                    for k, name in enumerate(rows[0]):
                        if well and k != w and name.strip() in out and k < len(r) and r[k].strip():
                            out[name.strip()][well] = r[k].strip()
                return {k: v for k, v in out.items() if v}
    return {}
