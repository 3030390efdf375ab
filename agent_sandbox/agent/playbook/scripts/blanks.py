"""Which wells of a plate are blanks, and which rule said so.

In order, the first rule that finds any:
  1. a plate map names them (a grid of sample names such as Gen5's `Layout` with
     `BLK`, or a reference file of well -> role/sample): names like blank, BLK,
     media, medium, buffer, NTC, water, no cells;
  2. a label column of the table names them (a long table's `sample` or `role`);
  3. wells that stay flat (kinetic reads) and read near the plate's minimum. When
     some of them fill whole plate columns or rows, as blanks are laid out, only
     those are blanks: a lone flat well elsewhere is a sample that did not grow.
Each rule says what it found in words the report uses.

Self-contained: standard library and the sibling layout.py.
"""

from __future__ import annotations

import re

from layout import well_id

BLANK = re.compile(r"^(blank|blk|bl|bk|medium|media|medium[ _-]?only|media[ _-]?only|buffer|empty|no[ _-]?cells?|"
                   r"background|bkg|bg|neg|negative|neg[ _-]?ctrl|ntc|no[ _-]?template|water|h2o|mock|sterile)"
                   r"[ _-]?\d*$", re.IGNORECASE)
FLAT_SHARE = 0.05    # a flat well rises less than this share of the plate's range
NEAR_SHARE = 0.10    # and its first reading is within this share of the range above the lowest well


def is_blank_name(value) -> bool:
    return isinstance(value, str) and bool(BLANK.match(value.strip()))


def plate_sort_key(well: str) -> tuple:
    letters = well.rstrip("0123456789")
    return (len(letters), letters, int(well[len(letters):] or 0))


def well_range(wells: list[str]) -> str:
    """'A12-H12' for a whole plate column or row, else 'A1, B5, C7'."""
    wells = sorted(wells, key=plate_sort_key)
    rows = {w.rstrip("0123456789") for w in wells}
    cols = {w[len(w.rstrip("0123456789")):] for w in wells}
    if len(wells) >= 3 and (len(cols) == 1 or len(rows) == 1):
        return f"{wells[0]}-{wells[-1]}"
    return ", ".join(wells)


def blank_label_column(labels: dict[str, dict[str, str]]) -> str | None:
    """The label column (of a plate map or a table) whose values name blanks."""
    return next((name for name, by_well in labels.items() if any(is_blank_name(v) for v in by_well.values())), None)


def by_labels(wells: list[str], labels: dict[str, dict[str, str]]) -> tuple[list[str], str | None]:
    column = blank_label_column(labels)
    if column is None:
        return [], None
    return [w for w in wells if is_blank_name(labels[column].get(w))], column


def whole_lines(candidates: set[str], wells: list[str]) -> list[str]:
    """The candidates that fill whole plate columns or rows (at least 3 wells each)."""
    lines: dict[tuple, list[str]] = {}
    for w in wells:
        letters = w.rstrip("0123456789")
        lines.setdefault(("column", w[len(letters):]), []).append(w)
        lines.setdefault(("row", letters), []).append(w)
    found = set()
    for members in lines.values():
        if len(members) >= 3 and all(m in candidates for m in members):
            found.update(members)
    return sorted(found, key=plate_sort_key)


def near_minimum(level: dict[str, float], top: dict[str, float], rise: dict[str, float] | None) -> set[str]:
    """Wells whose first reading is near the plate's lowest and, with a time course, that stay flat."""
    known = {w: v for w, v in level.items() if v is not None and v == v}
    if len(known) < 4:
        return set()
    lo = min(known.values())
    hi = max(v for v in top.values() if v is not None and v == v)
    span = hi - lo
    if span <= 0:
        return set()
    return {w for w, v in known.items() if v <= lo + NEAR_SHARE * span
            and (rise is None or (rise.get(w) is not None and rise[w] <= FLAT_SHARE * span))}


def find_blanks(wells: list[str], level: dict[str, float], top: dict[str, float] | None = None,
                rise: dict[str, float] | None = None, plate_map: dict | None = None, map_source: str = "",
                labels: dict | None = None) -> dict:
    """{wells, rule, kind, flat}: the blank wells, the rule in words, which rule
    (plate map | labels | flat | none), and the flat wells that are not blanks."""
    found, column = by_labels(wells, plate_map or {})
    if found:
        where = map_source if map_source else f"the file's {column} grid"
        names = sorted({plate_map[column][w] for w in found})
        return {"wells": found, "kind": "plate map", "flat": [],
                "rule": f"named {', '.join(repr(n) for n in names)} in the plate map ({where})"}
    found, column = by_labels(wells, labels or {})
    if found:
        names = sorted({labels[column][w] for w in found})
        return {"wells": found, "kind": "labels", "flat": [],
                "rule": f"labelled {', '.join(repr(n) for n in names)} in column {column}"}
    named = next((c for source in (plate_map or {}, labels or {}) for c, by_well in source.items()
                  if sum(1 for w in wells if by_well.get(w)) >= 0.9 * len(wells)), None)
    if named:  # the lab named every well, none a blank: low or flat wells are samples
        return {"wells": [], "kind": "none", "flat": [], "rule": f"none: {named} names every well, none of them a "
                "blank (blank, BLK, media, NTC, ...)"}
    candidates = near_minimum(level, top or level, rise)
    if not candidates or len(candidates) > 0.5 * len(wells):
        return {"wells": [], "kind": "none", "flat": sorted(candidates, key=plate_sort_key),
                "rule": "none found: no plate map or label names blanks, and no wells "
                        + ("stay flat " if rise is not None else "") + "near the plate's minimum"}
    lines = whole_lines(candidates, wells)
    if lines:
        flat = sorted(candidates - set(lines), key=plate_sort_key)
        return {"wells": lines, "kind": "flat", "flat": flat,
                "rule": ("wells that stay flat near the plate's minimum" if rise is not None
                         else "wells that read near the plate's minimum") + " and fill whole plate columns or rows"}
    if rise is None:  # one reading per well: low wells that are not a plate line may be samples
        return {"wells": [], "kind": "none", "flat": [], "rule": "none found: no plate map or label names blanks, "
                "and the lowest wells do not fill a plate column or row"}
    found = sorted(candidates, key=plate_sort_key)
    return {"wells": found, "kind": "flat", "flat": [],
            "rule": "wells that stay flat near the plate's minimum"}


def wells_of(names) -> list[str]:
    return sorted({w for n in names if (w := well_id(str(n)))}, key=plate_sort_key)


READING = re.compile(r"(^|_)(od\d*|a\d{3}|abs|absorbance|read|reading|fluorescence|rfu|rlu|luminescence|signal|value)"
                     r"($|_|\d)")


def endpoint_blanks(con, table: str, cols: list[dict], map_columns: list[str], map_source: str,
                    plate_table: bool = True) -> dict | None:
    """Blanks of a table of wells (one reading per well): {value, wells, rule, kind, level, spread, levels}.
    A plate grid's label columns are its plate map (the file's Layout, or `map_columns` joined from
    the reference `map_source`); another table's text columns are labels."""
    import statistics

    from common import sql_ident

    names = {c["name"] for c in cols}
    measures = [c["name"] for c in cols if c["role"] == "measure"]
    if "well" not in names or "plate" in names or not measures:
        return None
    value = next((m for m in measures if READING.search(m)), measures[0])
    label_cols = [c["name"] for c in cols if (c["role"] == "label" if plate_table else
                                              c["type"] == "text" and c["name"] != "well" and c["role"] != "flag")]
    rows = con.execute(f"SELECT well, CAST({sql_ident(value)} AS DOUBLE)"
                       + "".join(f", {sql_ident(c)}" for c in label_cols) + f" FROM {table}").fetchall()
    rows = [(well_id(str(r[0])),) + tuple(r[1:]) for r in rows if r[0] is not None and well_id(str(r[0]))]
    wells = sorted({r[0] for r in rows}, key=plate_sort_key)
    level = {r[0]: r[1] for r in rows}
    labels = {c: {r[0]: r[2 + k] for r in rows if r[2 + k]} for k, c in enumerate(label_cols)}
    if plate_table:
        column = blank_label_column(labels)
        found = find_blanks(wells, level, plate_map=labels, map_source=map_source if column in map_columns else "")
    else:
        found = find_blanks(wells, level, labels=labels)
    blank_values = [level[w] for w in found["wells"] if level.get(w) is not None]
    if not blank_values:
        return dict(found, value=value, level=None)
    return dict(found, value=value, level=round(statistics.median(blank_values), 6),
                spread=round(max(blank_values) - min(blank_values), 6), levels=level)
