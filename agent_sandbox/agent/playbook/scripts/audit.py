"""The cleaning audit: what cleaning did to each column, with cells and row numbers.

ColumnAudit holds the notes Cleaner (clean_table.py) writes as it decides each
column; routine notes (renames, parsing, trimming) become one line per kind.
find_duplicates lists rows identical to an earlier row.
Row numbers count the cleaned table's rows from 1 (header excluded).

Self-contained: depends on duckdb and the sibling common.py, parse.py.
"""

from __future__ import annotations

from common import row_list, sql_ident
from parse import HIGH_RE, LOW_RE, NUM_COMMA_RE, NUM_RE, NUMERIC_KINDS, RANGE_RE, is_marker, matches, trim

PARSE_SHARE = 0.95          # a column is converted when this share of its values parses
MOSTLY_NUMBERS = 0.5        # a text column this much numeric gets a "kept as text" audit entry
SHOWN_ROWS = 10             # row numbers listed in an audit entry
# Entries that happen to most columns of most files: one line per kind, after the rest.
ROUTINE = ("renamed column", "trimmed whitespace", "missing markers set to missing", "parsed as integer",
           "parsed as number", "parsed as date", "parsed as date-time", "parsed as elapsed time",
           "parsed as time of day")
PARSE_LABEL = {"integer": "parsed as integer", "number": "parsed as number", "date": "parsed as date",
               "datetime": "parsed as date-time", "elapsed": "parsed as elapsed time",
               "ymd": "parsed as date", "timeofday": "parsed as time of day"}


class ColumnAudit:
    """Audit notes per column; expects the Cleaner's con, names, original, raw_cols, decimal_comma,
    audit, routine, flags, elapsed and sample_numbers."""

    def _text_notes(self, table: str, i: int, name: str, trimmed: int, markers: int) -> None:
        if trimmed:
            self._routine("trimmed whitespace", name, cells=trimmed)
        if markers:
            self._routine("missing markers set to missing", name, cells=markers,
                          detail="markers: " + ", ".join(self._markers_seen(i)))
        numbers, values = self.sample_numbers.get(i, (0, 0))
        if not values or numbers < MOSTLY_NUMBERS * values:
            return
        v, num_re = f"v{i}", NUM_COMMA_RE if self.decimal_comma else NUM_RE
        numbers, total = self.con.execute(f"SELECT count_if({matches(v, num_re)}), count_if(NOT {matches(v, num_re)}) "
                                          f"FROM {table} WHERE {v} IS NOT NULL").fetchone()
        if total and numbers >= MOSTLY_NUMBERS * (numbers + total):
            bad = self.con.execute(
                f"SELECT {v}, count(*), list(rowid + 1 ORDER BY rowid)[1:{SHOWN_ROWS}] FROM {table} "
                f"WHERE {v} IS NOT NULL AND NOT {matches(v, num_re)} GROUP BY 1 ORDER BY min(rowid) LIMIT 8").fetchall()
            rows = sorted(r for _, _, rs in bad for r in rs)
            self._note("kept as text", name, cells=total, row_numbers=rows[:SHOWN_ROWS],
                       detail=f"{total:,} of {total + numbers:,} values are not numbers, too many to drop "
                              f"(numbers need {PARSE_SHARE:.0%}): " + "; ".join(
                                  f"{v!r} in {row_list(rs, c)}" for v, c, rs in bad))

    def _parsed_notes(self, table, i, name, kind, fmts, parsed, found, with_time, unit):
        """Audit a parsed column; returns its (type, unit), type None if it had no values."""
        markers, high, low, _ = found or (0, 0, 0, 0)
        if markers:
            self._routine("missing markers set to missing", name, cells=markers,
                          detail="markers: " + ", ".join(self._markers_seen(i, f"x{i}", table)))
        if kind in NUMERIC_KINDS and high + low:
            self._range_markers(table, i, name)
        junk = self._unparsed(table, i, kind) if found else None  # no raw cell left over: nothing to look for
        if parsed == 0:
            self._note("dropped empty column", name, detail=f"{self.original[i]!r} had no values")
            return None, unit
        ctype = {"ymd": "date", "elapsed": "number", "timeofday": "time"}.get(kind, kind)
        if kind == "datetime" and not with_time:
            ctype = "date"
            self.con.execute(f"ALTER TABLE {table} ALTER COLUMN p{i} TYPE DATE")
        if junk:
            what = "numbers" if kind in NUMERIC_KINDS else "dates" if kind in ("datetime", "ymd") else "times"
            self._note(f"values that are not {what} set to missing", name, cells=junk[0], row_numbers=junk[1],
                       detail="e.g. " + ", ".join(repr(v) for v in junk[2]) + "; " + row_list(junk[1], junk[0]))
        detail = {"number": "decimal comma" if self.decimal_comma else "", "ymd": "YYYYMMDD integers",
                  "elapsed": "h:mm:ss read as hours", "datetime": "formats: " + ", ".join(fmts)}.get(kind, "")
        label = "parsed as date" if ctype == "date" else PARSE_LABEL[kind]
        self._routine(label, name, cells=parsed, detail=detail)
        if kind == "elapsed":
            self.elapsed.add(name)
        return ctype, ("h" if kind == "elapsed" else unit)

    def _range_markers(self, table: str, i: int, name: str) -> None:
        x = f"x{i}"
        found = {}
        for side, regex in (("high", HIGH_RE), ("low", LOW_RE)):
            count, rows, values = self.con.execute(
                f"SELECT count(*), list(rowid + 1 ORDER BY rowid)[1:{SHOWN_ROWS}], list(DISTINCT trim({x}))[1:6] "
                f"FROM {table} WHERE {matches(x, regex)}").fetchone()
            if count:
                found[side] = {"count": count, "rows": rows, "values": sorted(values)}
        flag, n = f"{name}_flag", 1
        while flag in self.names:
            n += 1
            flag = f"{name}_flag{n}"
        self.flags[name] = dict(found, flag_column=flag)
        total = sum(f["count"] for f in found.values())
        rows = sorted(r for f in found.values() for r in f["rows"])[:SHOWN_ROWS]
        words = ", ".join(repr(v) for f in found.values() for v in f["values"])
        self._note("out-of-range markers set to missing", name, cells=total, row_numbers=rows,
                   detail=f"{words} (readings outside the instrument's range) are missing values; the marker is "
                          f"kept in column {flag}; " + row_list(rows, total))

    def _unparsed(self, table: str, i: int, kind: str):
        """(cells, rows, examples) of cells that are neither values nor markers, or None."""
        x = f"x{i}"
        cond = f"{x} IS NOT NULL AND NOT {is_marker(trim(x))}"
        if kind in NUMERIC_KINDS:
            cond += f" AND NOT {matches(x, RANGE_RE)}"
        count, rows, examples = self.con.execute(
            f"SELECT count(*), list(rowid + 1 ORDER BY rowid)[1:{SHOWN_ROWS}], list(DISTINCT {x})[1:5] "
            f"FROM {table} WHERE {cond}").fetchone()
        return (count, rows, examples) if count else None

    def _markers_seen(self, i: int, col: str | None = None, table: str = "guess_sample") -> list[str]:
        col = col or sql_ident(self.raw_cols[i])
        t = trim(col)
        rows = self.con.execute(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL AND {is_marker(t)} "
                                f"LIMIT 8").fetchall()
        return [repr(r[0]) for r in rows] or ["(beyond the first rows)"]

    def _note(self, action: str, column: str | None, rows: int | None = None, cells: int | None = None,
              detail: str = "", row_numbers: list[int] | None = None) -> None:
        entry = {"action": action, "column": column, "rows": rows, "cells": cells, "detail": detail}
        if row_numbers:
            entry["row_numbers"] = row_numbers
        self.audit.append(entry)

    def _routine(self, action: str, column: str, cells: int | None = None, detail: str = "") -> None:
        self.routine.append({"action": action, "column": column, "rows": None, "cells": cells, "detail": detail})



def group_routine(entries: list[dict]) -> list[dict]:
    """One audit line per routine kind: 98 renamed columns must not bury what matters."""
    out = []
    for action in ROUTINE:
        same = [e for e in entries if e["action"] == action]
        by_column = {e["column"]: e["cells"] for e in same if e["cells"] is not None}
        if len(same) == 1:
            out.append(dict(same[0], columns=[same[0]["column"]], by_column=by_column))
        elif same:
            cells = sum(by_column.values()) if by_column else None
            shown = "; ".join(f"{e['column']}" + (f" ({e['detail']})" if e["detail"] else "") for e in same[:6])
            out.append({"action": action, "column": None, "columns": [e["column"] for e in same], "rows": None,
                        "cells": cells, "by_column": by_column, "detail": f"{len(same)} columns: {shown}"
                        + (f"; ... and {len(same) - 6} more" if len(same) > 6 else "")})
    return out


NEARLY_UNIQUE = 0.9  # a column with this share of distinct values is, alone, the first key for identical rows
NOT_LOOKED = {"count": 0, "rows": [], "first_of": [], "rows_sql": "SELECT NULL LIMIT 0"}


def find_duplicates(con, table: str, cols: list[str], distinct: dict[str, int] | None = None,
                    rows: int | None = None) -> dict:
    """Rows identical to an earlier row: their count, the first row numbers, and a SQL list of
    all their rowids. Rows are first compared by a key in one narrow GROUP BY; only rows
    whose key repeats are compared column by column. With the columns' `distinct` counts
    (the profile's) the key covers only the two most varied columns when they tell most rows
    apart (identical rows agree there too), or only the most varied one, by its values, when
    it alone nearly does: hashing every column of every row costs more than checking the few
    candidates in full, and grouping one column by value costs less than by a hash."""
    idents = ", ".join(sql_ident(c) for c in cols)
    key = f"hash({idents})"
    if distinct and rows:
        varied = sorted(cols, key=lambda c: -(distinct.get(c) or 0))[:2]
        most = distinct.get(varied[0]) or 0
        if len(varied) < len(cols) and most >= NEARLY_UNIQUE * rows:
            key = sql_ident(varied[0])
        elif len(varied) < len(cols) and most >= 0.5 * rows:
            key = f"hash({', '.join(sql_ident(c) for c in varied)})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE dup_hashes AS SELECT {key} AS h FROM {table} "
                "GROUP BY 1 HAVING count(*) > 1")
    empty = dict(NOT_LOOKED)
    if not con.execute("SELECT count(*) FROM dup_hashes").fetchone()[0]:
        con.execute("DROP TABLE dup_hashes")
        return empty
    # IN never matches a missing key: rows that share one (several rows without an ID) are candidates too
    con.execute(f"CREATE OR REPLACE TEMP TABLE dup_rows AS SELECT rowid AS r, "
                f"first_value(rowid) OVER (PARTITION BY {idents} ORDER BY rowid) AS f FROM {table} "
                f"WHERE {key} IN (SELECT h FROM dup_hashes) "
                f"OR ({key} IS NULL AND EXISTS (SELECT 1 FROM dup_hashes WHERE h IS NULL))")
    count, rows, firsts = con.execute("SELECT count(*), list(r + 1 ORDER BY r)[1:20], list(f + 1 ORDER BY r)[1:20] "
                                      "FROM dup_rows WHERE r <> f").fetchone()
    con.execute("DROP TABLE dup_hashes")
    if not count:
        return empty
    return {"count": count, "rows": rows, "first_of": firsts,
            "rows_sql": "SELECT r FROM dup_rows WHERE r <> f"}
