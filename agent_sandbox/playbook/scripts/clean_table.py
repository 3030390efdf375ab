"""Clean one table in DuckDB and record every change in an audit.

Cleaning, in order: unique snake_case column names; text trimmed; common
missing markers (empty, NA, N/A, -, null, ...) made missing; text columns
parsed as integers, numbers, dates or date-times when at least 95% of their
values parse (the rest become missing and are counted); empty columns, empty
rows and exact duplicate rows (compared after cleaning) dropped, keeping the
first occurrence and the original row order.

Types are guessed on the first rows, then checked with one aggregate pass over
the whole table, so a 1 GB file is never held in memory. The text is read and
parsed once, into a wide table that becomes the cleaned one (see Cleaner.load).

Self-contained: depends on duckdb only.
"""

from __future__ import annotations

import re
import unicodedata

MISSING_MARKERS = ["", "na", "n/a", "n.a.", "nan", "null", "-", "--", "#n/a"]
EDGE_SPACE = r"^[\s\xa0]|[\s\xa0]$"        # leading or trailing whitespace, no-break space included
EDGE_SPACES = r"^[\s\xa0]+|[\s\xa0]+$"
MARKER_BYTES = max(len(m.encode()) for m in MISSING_MARKERS)
PARSE_SHARE = 0.95          # a column is converted when this share of its values parses
SAMPLE_ROWS = 20000
INT_RE = r"[+-]?[0-9]+"
NUM_RE = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
NUM_COMMA_RE = r"[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)([eE][+-]?[0-9]+)?"
# Day-first before month-first: when both fit equally we read 03/04 as 3 April.
DATE_FORMATS = [
    "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d",
    "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d %b %Y", "%b %d, %Y", "%d-%b-%Y",
]
ISO = "ISO 8601"
# A cheap pre-check before trying every format: 2026-03-14, 14/03/2026, 14 Mar 2026, Mar 14, 2026
DATE_LIKE = r"^([0-9]{1,4}[-/. ][0-9A-Za-z]{1,9}[-/., ]+[0-9]{2,4}|[A-Za-z]{3,9}\.? [0-9]{1,2},? [0-9]{4})"


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def snake_case(name: str) -> str:
    text = str(name).replace("µ", "u").replace("μ", "u").replace("%", " pct ").replace("#", " num ")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z0-9])([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if text and text[0].isdigit():
        text = "col_" + text
    return text


def unique_snake_names(names: list[str]) -> list[str]:
    out, seen = [], set()
    for i, name in enumerate(names):
        base = snake_case(name) or f"column_{i + 1}"
        new, n = base, 1
        while new in seen:
            n += 1
            new = f"{base}_{n}"
        seen.add(new)
        out.append(new)
    return out


def trim(col: str) -> str:
    # trim() with a character list is several times slower than this check-then-strip.
    # (Checks on the first and last character with IN lists are faster on a few columns
    # but take DuckDB seconds per chunk on a table with hundreds of columns.)
    return (f"CASE WHEN regexp_matches({col}, {sql_str(EDGE_SPACE)}) "
            f"THEN regexp_replace({col}, {sql_str(EDGE_SPACES)}, '', 'g') ELSE {col} END")


def is_marker(text: str) -> str:
    # the length test first spares lower() on the many cells too long to be a marker
    return (f"(CASE WHEN strlen({text}) <= {MARKER_BYTES} "
            f"THEN lower({text}) IN ({', '.join(sql_str(m) for m in MISSING_MARKERS)}) ELSE false END)")


def marker_to_null(text: str) -> str:
    return f"(CASE WHEN {is_marker(text)} THEN NULL ELSE {text} END)"


def _swap(fmt: str) -> str:
    return fmt.replace("%d", "%X").replace("%m", "%d").replace("%X", "%m")


class EmptyTable(Exception):
    """The table has no values at all (for example a header with no rows)."""


class Cleaner:
    def __init__(self, con, view: str, names: list[str], decimal_comma: bool = False):
        self.con, self.view, self.original = con, view, names
        self.decimal_comma = decimal_comma
        self.names = unique_snake_names(names)
        rel = con.sql(f"SELECT * FROM {view} LIMIT 0")
        self.raw_cols = list(rel.columns)
        self.is_text = [str(t) == "VARCHAR" for t in rel.types]
        self.sql_types = [str(t) for t in rel.types]
        self.audit: list[dict] = []

    # -- expressions --------------------------------------------------------
    def value(self, i: int) -> str:
        """The cell after trimming and missing markers (still text)."""
        col = sql_ident(self.raw_cols[i])
        return marker_to_null(trim(col)) if self.is_text[i] else col

    def number(self, v: str) -> str:
        return f"TRY_CAST(replace({v}, ',', '.') AS DOUBLE)" if self.decimal_comma else f"TRY_CAST({v} AS DOUBLE)"

    def parsed(self, v: str, kind: str, formats: list[str]) -> str:
        if kind == "integer":  # the regex keeps TRY_CAST from rounding '3.5' or reading '1e3'
            return f"(CASE WHEN regexp_full_match({v}, {sql_str(INT_RE)}) THEN TRY_CAST({v} AS BIGINT) END)"
        if kind == "number":
            return f"(CASE WHEN regexp_full_match({v}, {sql_str(NUM_COMMA_RE if self.decimal_comma else NUM_RE)}) THEN {self.number(v)} END)"
        parts = [f"TRY_CAST({v} AS TIMESTAMP)" if f == ISO else f"try_strptime({v}, {sql_str(f)})" for f in formats]
        ts = parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
        return f"CAST({ts} AS DATE)" if kind == "date" else ts

    # -- type guess on a sample ---------------------------------------------
    def guess_types(self) -> list[tuple[str, list[str]]]:
        """(kind, date formats) per column from the first rows; kind 'text' keeps it as is."""
        text_cols = [i for i in range(len(self.raw_cols)) if self.is_text[i]]
        guesses = [("keep", [])] * len(self.raw_cols)
        if not text_cols:
            return guesses
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE guess_sample AS SELECT * FROM {self.view} LIMIT {SAMPLE_ROWS}")
        num_re = NUM_COMMA_RE if self.decimal_comma else NUM_RE
        checks = []
        for i in text_cols:
            v = self.value(i)
            checks += [f"count({v})", f"count_if(regexp_full_match({v}, {sql_str(INT_RE)}))",
                       f"count_if(regexp_full_match({v}, {sql_str(num_re)}))",
                       f"count_if(regexp_matches({v}, {sql_str(DATE_LIKE)}))"]
        counts = self.con.execute(f"SELECT {', '.join(checks)} FROM guess_sample").fetchone()
        for k, i in enumerate(text_cols):
            present, ints, nums, datelike = counts[4 * k: 4 * k + 4]
            if present == 0:
                guesses[i] = ("text", [])
            elif ints == present:
                guesses[i] = ("integer", [])
            elif nums >= PARSE_SHARE * present:
                guesses[i] = ("number", [])
            elif datelike >= PARSE_SHARE * present:  # only then try the date formats one by one
                chosen = self._date_formats(self.value(i), present)
                guesses[i] = ("datetime", chosen) if chosen else ("text", [])
            else:
                guesses[i] = ("text", [])
        return guesses

    def _date_formats(self, v: str, present: int) -> list[str]:
        iso = self.con.execute(f"SELECT count_if({self.parsed(v, 'datetime', [ISO])} IS NOT NULL) FROM guess_sample").fetchone()[0]
        if iso == present:  # ISO dates, the common case: no other format could cover more
            return [ISO]
        fmts = [ISO] + DATE_FORMATS
        hits = self.con.execute("SELECT " + ", ".join(
            f"count_if({self.parsed(v, 'datetime', [f])} IS NOT NULL)" for f in fmts) + " FROM guess_sample").fetchone()
        return self._pick_formats(v, dict(zip(fmts, hits)), present)

    def _pick_formats(self, v: str, hits: dict[str, int], present: int) -> list[str]:
        chosen: list[str] = []
        covered = 0
        for fmt, count in sorted(hits.items(), key=lambda kv: -kv[1]):
            if count == 0 or _swap(fmt) in chosen:
                continue
            trial = chosen + [fmt]
            n = self.con.execute(f"SELECT count_if({self.parsed(v, 'datetime', trial)} IS NOT NULL) FROM guess_sample").fetchone()[0]
            if n > covered:
                chosen, covered = trial, n
        return chosen if covered >= PARSE_SHARE * present else []

    # -- full passes ------------------------------------------------------------
    def load(self, table: str, guesses: list[tuple[str, list[str]]]) -> None:
        """Parse the source once into a wide table stored in file order.

        Per column i it holds the cell trimmed with markers made missing
        (__v<i>), what that changed (__f<i>: 1 trimmed, 2 was a marker) and,
        when the sample says integers, numbers or dates, the value parsed that
        way (__p<i>; a sample with non-integers needs no integer parse, as
        those rows are in the table too). Counting them is then cheap, and
        the cleaned table is this one with the unchosen columns dropped: the
        text is parsed once and the data copied once. Rows keep file order
        (preserve_insertion_order), so rowid is the row number.
        """
        inner, middle, outer = [], [], []
        for i, raw in enumerate(self.raw_cols):
            v = f"__v{i}"
            if self.is_text[i]:
                inner += [f"{sql_ident(raw)} AS r{i}", f"{trim(sql_ident(raw))} AS t{i}"]
                middle += [f"CAST(CASE WHEN r{i} IS NULL THEN 0 WHEN {is_marker(f't{i}')} THEN 2 "
                           f"WHEN t{i} <> r{i} THEN 1 ELSE 0 END AS UTINYINT) AS __f{i}", f"t{i}"]
                outer += [f"CASE WHEN __f{i} = 2 THEN NULL ELSE t{i} END AS {v}", f"__f{i}"]
            else:
                inner.append(f"{sql_ident(raw)} AS {v}")
                middle.append(v)
                outer.append(v)
        final = []
        for i in range(len(self.raw_cols)):
            kind, fmts = guesses[i]
            final += [f"__v{i}"] + ([f"__f{i}"] if self.is_text[i] else [])
            if kind in ("integer", "number", "datetime"):
                final.append(f"{self.parsed(f'__v{i}', kind, fmts)} AS __p{i}")
        self.con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT {', '.join(final)} FROM (SELECT {', '.join(outer)} "
            f"FROM (SELECT {', '.join(middle)} FROM (SELECT {', '.join(inner)} FROM {self.view})))")

    def count(self, table: str, guesses: list[tuple[str, list[str]]]) -> list[int]:
        """One aggregate pass: rows, empty rows, then per column five counts:
        non-null cells, cells with a value, cells trimmed, and two parse counts
        (integer and number, or date-times and date-times with a time of day)."""
        n = len(self.raw_cols)
        aggs = ["count(*)", "count_if(" + " AND ".join(f"__v{i} IS NULL" for i in range(n)) + ")"]
        for i in range(n):
            v = f"__v{i}"
            if self.is_text[i]:
                aggs += [f"count({v}) + count_if(__f{i} = 2)", f"count({v})", f"count_if(__f{i} = 1)"]
            else:
                aggs += [f"count({v})", f"count({v})", "0"]
            kind, _ = guesses[i]
            if kind in ("integer", "number"):
                aggs += [f"count(__p{i})", "0"]
            elif kind == "datetime":
                aggs += [f"count(__p{i})", f"count_if(__p{i} <> date_trunc('day', __p{i}))"]
            else:
                aggs += ["0", "0"]
        row = self.con.execute(f"SELECT {', '.join(aggs)} FROM {table}").fetchone()
        return [0 if x is None else x for x in row]  # count_if over no rows is NULL

    def run(self, out_table: str) -> dict:
        guesses = self.guess_types()
        n = len(self.raw_cols)
        self.load(out_table, guesses)
        row = self.count(out_table, guesses)
        rows_before, empty_rows = row[0], row[1]
        if rows_before == empty_rows:
            self.con.execute(f"DROP TABLE {out_table}")
            raise EmptyTable("no data rows below the header" if rows_before == 0 else "every row is empty")
        if empty_rows:
            self.con.execute(f"DELETE FROM {out_table} WHERE " + " AND ".join(f"__v{i} IS NULL" for i in range(n)))

        for i, name in enumerate(self.names):
            if name != self.original[i]:
                self._note("renamed column", name, detail=f"{self.original[i]!r} -> {name}")
        keep, columns = {}, []  # wide column -> final name
        for i in range(n):
            nonnull, present, trimmed, parsed, with_time = row[2 + 5 * i: 7 + 5 * i]
            name, v = self.names[i], f"__v{i}"
            if trimmed:
                self._note("trimmed whitespace", name, cells=trimmed)
            if nonnull - present:
                self._note("missing markers set to missing", name, cells=nonnull - present,
                           detail="markers: " + ", ".join(self._markers_seen(i)))
            if present == 0:
                self._note("dropped empty column", name, detail=f"{self.original[i]!r} had no values")
                continue
            kind, fmts = guesses[i]
            chosen, ctype = v, "text" if self.is_text[i] else self._kind_of(self.sql_types[i])
            if kind == "integer" and parsed < present:
                # integers in the sampled first rows but not below them: try them as numbers
                number = self.parsed(v, "number", [])
                parsed = self.con.execute(f"SELECT count({number}) FROM {out_table}").fetchone()[0]
                kind = "number"
                if parsed >= PARSE_SHARE * present:
                    self.con.execute(f"ALTER TABLE {out_table} ALTER COLUMN __p{i} TYPE DOUBLE USING {number}")
            if kind == "integer" or (kind == "number" and parsed >= PARSE_SHARE * present):
                chosen, ctype = f"__p{i}", kind
                if kind == "number":
                    self._parse_loss(out_table, i, chosen, present - parsed, "numbers")
                self._note_parse(name, ctype, present, "decimal comma" if self.decimal_comma and ctype == "number" else "")
            elif kind == "datetime" and parsed >= PARSE_SHARE * present:
                chosen, ctype = f"__p{i}", "datetime" if with_time else "date"
                self._parse_loss(out_table, i, chosen, present - parsed, "dates")
                self._note_parse(name, ctype, present, "formats: " + ", ".join(fmts))
                if ctype == "date":
                    self.con.execute(f"ALTER TABLE {out_table} ALTER COLUMN {chosen} TYPE DATE")
            keep[chosen] = name
            columns.append({"name": name, "original": self.original[i], "type": ctype})

        # the wide table becomes the cleaned one: dropping and renaming columns copies no data
        for col in [c for c in self.con.sql(f"SELECT * FROM {out_table} LIMIT 0").columns if c not in keep]:
            self.con.execute(f"ALTER TABLE {out_table} DROP COLUMN {col}")
        for col, name in keep.items():
            self.con.execute(f"ALTER TABLE {out_table} RENAME COLUMN {col} TO {sql_ident(name)}")
        drop_duplicates(self.con, out_table, ", ".join(sql_ident(c["name"]) for c in columns))
        rows_after = self.con.execute(f"SELECT count(*) FROM {out_table}").fetchone()[0]
        if empty_rows:
            self._note("dropped empty rows", None, rows=empty_rows)
        duplicates = rows_before - empty_rows - rows_after
        if duplicates:
            self._note("dropped duplicate rows", None, rows=duplicates, detail="exact copies of an earlier row after cleaning; the first is kept")
        return {"rows_before": rows_before, "columns_before": n, "rows_after": rows_after,
                "columns_after": len(columns), "empty_rows": empty_rows, "duplicate_rows": duplicates,
                "columns": columns, "audit": self.audit}

    # -- helpers --------------------------------------------------------------
    @staticmethod
    def _kind_of(sql_type: str) -> str:
        t = sql_type.upper()
        if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT"):
            return "integer"
        if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
            return "number"
        if t == "DATE":
            return "date"
        if t.startswith("TIMESTAMP"):
            return "datetime"
        if t == "BOOLEAN":
            return "boolean"
        return "text" if t == "VARCHAR" else t.lower()

    def _note(self, action: str, column: str | None, rows: int | None = None, cells: int | None = None, detail: str = "") -> None:
        self.audit.append({"action": action, "column": column, "rows": rows, "cells": cells, "detail": detail})

    def _note_parse(self, name: str, ctype: str, present: int, detail: str) -> None:
        label = {"integer": "parsed as integer", "number": "parsed as number", "date": "parsed as date",
                 "datetime": "parsed as date-time"}[ctype]
        self._note(label, name, cells=present, detail=detail)

    def _markers_seen(self, i: int) -> list[str]:
        col = sql_ident(self.raw_cols[i])
        rows = self.con.execute(
            f"SELECT DISTINCT {col} FROM guess_sample WHERE {col} IS NOT NULL AND {self.value(i)} IS NULL LIMIT 8").fetchall()
        return [repr(r[0]) for r in rows] or ["(beyond the first rows)"]

    def _parse_loss(self, table: str, i: int, parsed: str, lost: int, what: str) -> None:
        if lost <= 0:
            return
        examples = self.con.execute(
            f"SELECT DISTINCT __v{i} FROM {table} WHERE __v{i} IS NOT NULL AND {parsed} IS NULL LIMIT 5").fetchall()
        self._note(f"values that are not {what} set to missing", self.names[i], cells=lost,
                   detail="e.g. " + ", ".join(repr(e[0]) for e in examples))


def drop_duplicates(con, table: str, cols: str) -> None:
    """Delete every row that repeats an earlier one, keeping table order (rowid).

    Rows are first compared by a hash: one narrow GROUP BY over the whole
    table. Only rows whose hash repeats are then compared column by column, so
    a big table with few duplicates is never grouped on all its columns.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE dup_hashes AS SELECT hash({cols}) AS h FROM {table} "
                "GROUP BY 1 HAVING count(*) > 1")
    if con.execute("SELECT count(*) FROM dup_hashes").fetchone()[0]:
        candidates = f"hash({cols}) IN (SELECT h FROM dup_hashes)"
        con.execute(f"DELETE FROM {table} WHERE {candidates} AND rowid NOT IN "
                    f"(SELECT min(rowid) FROM {table} WHERE {candidates} GROUP BY {cols})")
    con.execute("DROP TABLE dup_hashes")


def clean_table(con, view: str, names: list[str], out_table: str, decimal_comma: bool = False) -> dict:
    return Cleaner(con, view, names, decimal_comma).run(out_table)
