"""Clean one table in DuckDB and record every change in an audit.

Cleaning, in order: unique snake_case column names, each with its unit; text
trimmed; missing markers (empty, NA, N/A, -, null, ...) made missing; text
columns parsed as integers, numbers, elapsed times (hours), dates or
date-times when at least 95% of their values parse. Instrument range markers
(OVER, OVRFLW, >3.5, <LOD, n.d.) are missing values with the marker kept in a
`<column>_flag` column, never a reason to keep numbers as text. Other cells
that do not parse become missing and are listed with their rows; a column that
stays text though most of it is numbers says so, with the cells and rows.
Empty columns and empty rows are dropped. Identical rows are KEPT (repeat
measurements are real data) and reported; `drop_duplicates` removes them.

Row numbers in the audit count the cleaned table's rows from 1 (header excluded).
Types are guessed on the first rows, then checked with one aggregate pass over
the whole table, so a 1 GB file is never held in memory.

Self-contained: depends on duckdb and the sibling audit.py, common.py, parse.py, units.py.
"""

from __future__ import annotations

from audit import NOT_LOOKED, PARSE_SHARE, SHOWN_ROWS, ColumnAudit, find_duplicates, group_routine
from common import row_list, sql_ident, sql_str, unique_snake_names
from parse import (
    DATE_FORMATS,
    DATE_LIKE,
    ELAPSED_RE,
    HIGH_RE,
    INT_RE,
    ISO,
    LOW_RE,
    NUM_COMMA_RE,
    NUM_RE,
    NUMERIC_KINDS,
    RANGE_RE,
    YMD_RE,
    is_marker,
    matches,
    parse,
    swap_day_month,
    trim,
    trim_once,
)
from units import header_unit, name_unit

SAMPLE_ROWS = 20000
SMALL_COPY_ROWS = 100_000  # tables this small are rebuilt in one statement rather than altered column by column
FALLBACK = {"ymd": "integer", "integer": "number", "number": "text", "elapsed": "text", "timeofday": "text",
            "datetime": "text"}


class EmptyTable(Exception):
    """The table has no values at all (for example a header with no rows)."""


def sql_type_kind(sql_type: str) -> str:
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
    if t == "TIME":
        return "time"
    return "text" if t == "VARCHAR" else t.lower()


class Cleaner(ColumnAudit):
    def __init__(self, con, view: str, names: list[str], decimal_comma: bool = False,
                 units: list[str] | None = None, notes: list[dict] | None = None, drop_duplicates: bool = False,
                 typed_view=None, before_load=None):
        self.con, self.view, self.original = con, view, names
        self.decimal_comma, self.drop_duplicates = decimal_comma, drop_duplicates
        self.names = unique_snake_names(names)
        units = list(units or []) + [""] * len(names)
        self.units = [units[i] or header_unit(names[i]) or name_unit(self.names[i]) for i in range(len(names))]
        rel = con.sql(f"SELECT * FROM {view} LIMIT 0")
        self.raw_cols = list(rel.columns)
        self.sql_types = [str(t) for t in rel.types]
        self.is_text = [t == "VARCHAR" for t in self.sql_types]
        self.audit: list[dict] = list(notes or [])
        self.routine: list[dict] = []
        self.flags: dict[str, dict] = {}      # column -> out-of-range markers found (for the findings)
        self.elapsed: set[str] = set()        # columns read from h:mm:ss
        self.sample_numbers: dict[int, tuple[int, int]] = {}   # text column -> (numbers, values) in the sample
        self.typed_view = typed_view          # reads the source with typed columns, if it can
        self.before_load = before_load        # called as the long read starts (DuckDB then leaves Python free)
        self.clean_sample: set[int] = set()   # columns whose sample holds no marker, no padding, no empty text
        self.tall = False                     # more rows than the sample: worth a trim cheaper per cell

    # -- type guess on a sample ---------------------------------------------
    def guess_types(self) -> list[tuple[str, list[str]]]:
        """(kind, date formats) per column from the first rows; 'keep' for typed columns."""
        text_cols = [i for i in range(len(self.raw_cols)) if self.is_text[i]]
        guesses: list[tuple[str, list[str]]] = [("keep", [])] * len(self.raw_cols)
        if not text_cols:
            return guesses
        # the sample's cells as read and trimmed (__t<i>, in a subquery: the trim written once per
        # column costs less to plan) with missing markers made NULL (__g<i>); read by one thread,
        # which stops at the sample's end (parallel readers would read far past it first)
        threads = self.con.execute("SELECT current_setting('threads')").fetchone()[0]
        self.con.execute("SET threads = 1")
        try:
            self.con.execute("CREATE OR REPLACE TEMP TABLE guess_sample AS SELECT * EXCLUDE ("
                             + ", ".join(f"__t{i}" for i in text_cols) + "), "
                             + ", ".join(f"CASE WHEN {is_marker(f'__t{i}')} THEN NULL ELSE __t{i} END AS __g{i}"
                                         for i in text_cols)
                             + " FROM (SELECT *, " + ", ".join(f"{trim(sql_ident(self.raw_cols[i]))} AS __t{i}"
                                                               for i in text_cols)
                             + f" FROM (SELECT * FROM {self.view} LIMIT {SAMPLE_ROWS}))")
        finally:
            self.con.execute(f"SET threads = {int(threads)}")
        num_re = NUM_COMMA_RE if self.decimal_comma else NUM_RE
        checks = []
        for i in text_cols:
            raw = sql_ident(self.raw_cols[i])
            checks += [f"count(__g{i})", f"count_if({matches(f'__g{i}', INT_RE)})", f"count_if({matches(f'__g{i}', num_re)})",
                       f"count_if({raw} = __g{i} AND NOT regexp_matches({raw}, '^\\s|\\s$'))", f"count({raw})"]
        sampled, *counts = [x or 0 for x in self.con.execute(f"SELECT count(*), {', '.join(checks)} FROM guess_sample"
                                                             ).fetchone()]
        self.tall = sampled >= SAMPLE_ROWS
        first = {i: counts[5 * k: 5 * k + 3] for k, i in enumerate(text_cols)}
        self.clean_sample = {i for k, i in enumerate(text_cols) if counts[5 * k] and counts[5 * k + 3] == counts[5 * k + 4]}
        # the rarer kinds are looked for only where the first counts leave a doubt
        checks, rest = [], [i for i in text_cols if not (first[i][0] and first[i][1] == first[i][0])
                            and not (first[i][0] and first[i][2] >= PARSE_SHARE * first[i][0])]
        for i in text_cols:
            v = f"__g{i}"
            if first[i][0] and first[i][1] == first[i][0]:
                checks.append(f"count_if({matches(v, YMD_RE)})")
            elif i in rest:
                checks += [f"count_if({matches(v, RANGE_RE)})", f"count_if({matches(v, ELAPSED_RE)})",
                           f"count_if(regexp_matches({v}, {sql_str(DATE_LIKE)}))"]
        more = iter([x or 0 for x in self.con.execute(f"SELECT {', '.join(checks)} FROM guess_sample").fetchone()]
                    if checks else [])
        for i in text_cols:
            present, ints, nums = first[i]
            ymd = ranges = elapsed = datelike = 0
            if present and ints == present:
                ymd = next(more)
            elif i in rest:
                ranges, elapsed, datelike = next(more), next(more), next(more)
            values = present - ranges
            if present == 0:
                guesses[i] = ("text", [])
            elif values > 0 and ints == values:
                guesses[i] = ("ymd" if ymd == values else "integer", [])
            elif values > 0 and nums >= PARSE_SHARE * values:
                guesses[i] = ("number", [])
            elif elapsed >= PARSE_SHARE * present:
                # a clock time (09:30) when nothing starts near zero or passes a day
                first_h, last_h = self.con.execute(f"SELECT min({parse(f'__g{i}', 'elapsed')}), "
                                                   f"max({parse(f'__g{i}', 'elapsed')}) FROM guess_sample").fetchone()
                of_day = (first_h or 0) >= 1 and (last_h or 0) < 24
                guesses[i] = ("timeofday" if of_day else "elapsed", [])
            elif datelike >= PARSE_SHARE * present:  # only then try the date formats one by one
                chosen = self._date_formats(f"__g{i}", present)
                guesses[i] = ("datetime", chosen) if chosen else ("text", [])
            else:
                guesses[i] = ("text", [])
                self.sample_numbers[i] = (nums, present)
        return guesses

    def _date_formats(self, v: str, present: int) -> list[str]:
        iso = self.con.execute(f"SELECT count({parse(v, 'datetime', [ISO])}) FROM guess_sample").fetchone()[0]
        if iso == present:  # ISO dates, the common case: no other format could cover more
            return [ISO]
        fmts = [ISO] + DATE_FORMATS
        hits = self.con.execute("SELECT " + ", ".join(f"count({parse(v, 'datetime', [f])})" for f in fmts)
                                + " FROM guess_sample").fetchone()
        chosen: list[str] = []
        covered = 0
        for fmt, count in sorted(zip(fmts, hits), key=lambda kv: -kv[1]):
            if count == 0 or swap_day_month(fmt) in chosen:
                continue
            n = self.con.execute(f"SELECT count({parse(v, 'datetime', chosen + [fmt])}) FROM guess_sample").fetchone()[0]
            if n > covered:
                chosen, covered = chosen + [fmt], n
        return chosen if covered >= PARSE_SHARE * present else []

    # -- full passes ------------------------------------------------------------
    def typed_columns(self, guesses) -> dict[int, str]:
        """Columns whose whole sample is clean integers, numbers or ISO date-times: read typed."""
        sql = {"integer": "BIGINT", "number": "DOUBLE"}
        types = {i: sql[kind] for i, (kind, _) in enumerate(guesses) if kind in sql and i in self.clean_sample}
        types.update({i: "TIMESTAMP" for i, (kind, fmts) in enumerate(guesses)
                      if kind == "datetime" and fmts == [ISO] and i in self.clean_sample})
        return types if self.typed_view else {}

    def load_typed(self, table: str, guesses) -> None:
        """Load with the clean columns read typed; on a cell that does not convert (a marker
        or a word past the sample) load everything as text instead."""
        import duckdb

        types = self.typed_columns(guesses)
        if types:
            try:
                return self.load(table, guesses, self.typed_view(types), set(types))
            except duckdb.Error:
                pass
        self.load(table, guesses)

    def load(self, table: str, guesses: list[tuple[str, list[str]]], view: str | None = None,
             typed: set[int] = frozenset()) -> None:
        """Read the source once into a wide table stored in file order (rowid = row number - 1).

        A column to parse keeps the parsed value (p<i>) and, only where that is
        missing, the raw cell (x<i>), which is all the audit needs: a column of
        numbers is never trimmed or copied as text. A text column keeps the
        trimmed cell with markers made missing (v<i>) and what that changed
        (f<i>: 1 trimmed, 2 was a marker).
        """
        inner, middle, outer = [], [], []
        for i, raw in enumerate(self.raw_cols):
            kind, fmts = guesses[i]
            col = sql_ident(raw)
            if i in typed and kind == "number":  # read as values already; NaN and infinity are not numbers
                inner += [f"CASE WHEN isfinite({col}) THEN {col} END AS p{i}",
                          f"CASE WHEN NOT isfinite({col}) THEN CAST({col} AS VARCHAR) END AS x{i}"]
                middle += [f"p{i}", f"x{i}"]
                outer += [f"p{i}", f"x{i}"]
            elif i in typed:  # integers and date-times read as values: nothing left over
                inner += [f"{col} AS p{i}", f"CAST(NULL AS VARCHAR) AS x{i}"]
                middle += [f"p{i}", f"x{i}"]
                outer += [f"p{i}", f"x{i}"]
            elif kind == "keep":
                inner.append(f"{col} AS v{i}")
                middle.append(f"v{i}")
                outer.append(f"v{i}")
            elif kind == "text":
                inner += [f"{col} AS r{i}", f"{trim_once(col) if self.tall else trim(col)} AS t{i}"]
                middle += [f"CAST(CASE WHEN r{i} IS NULL THEN 0 WHEN {is_marker(f't{i}')} THEN 2 WHEN t{i} <> r{i} "
                           f"THEN 1 ELSE 0 END AS UTINYINT) AS f{i}", f"t{i}"]
                outer += [f"CASE WHEN f{i} = 2 THEN NULL ELSE t{i} END AS v{i}", f"f{i}"]
            elif kind == "number":
                # a cast behind a CASE (not pushed into the CSV reader, where a failure would stop the
                # read) is cheaper than a regular expression; NaN and infinity are not numbers
                text = f"replace({col}, ',', '.')" if self.decimal_comma else col
                inner += [f"CASE WHEN {col} IS NOT NULL THEN TRY_CAST({text} AS DOUBLE) END AS d{i}", f"{col} AS r{i}"]
                middle += [f"CASE WHEN isfinite(d{i}) THEN d{i} END AS p{i}", f"r{i}"]
                outer += [f"p{i}", f"CASE WHEN p{i} IS NULL THEN r{i} END AS x{i}"]
            else:
                inner += [f"{parse(col, kind, fmts, self.decimal_comma)} AS p{i}", f"{col} AS r{i}"]
                middle += [f"p{i}", f"r{i}"]
                outer += [f"p{i}", f"CASE WHEN p{i} IS NULL THEN r{i} END AS x{i}"]
        self.con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {', '.join(outer)} FROM (SELECT "
                         f"{', '.join(middle)} FROM (SELECT {', '.join(inner)} FROM {view or self.view}))")

    def count(self, table: str, guesses) -> tuple[list, dict[int, tuple]]:
        """One aggregate pass: rows, empty rows and per column four counts; then, for parsed
        columns with unparsed cells, what those cells are (markers, range markers, numbers)."""
        empty, aggs = [], ["count(*)"]
        for i, (kind, _) in enumerate(guesses):
            if kind in ("keep", "text"):
                empty.append(f"v{i} IS NULL")
                trimmed = f"count_if(f{i} = 1)" if kind == "text" else "0"
                markers = f"count_if(f{i} = 2)" if kind == "text" else "0"
                aggs += [f"count(v{i})", trimmed, markers, "0"]
            else:
                empty.append(f"(p{i} IS NULL AND (x{i} IS NULL OR {is_marker(trim(f'x{i}'))}))")
                with_time = f"count_if(p{i} <> date_trunc('day', p{i}))" if kind == "datetime" else "0"
                aggs += [f"count(p{i})", f"count(x{i})", "0", with_time]
        aggs.insert(1, "count_if(" + " AND ".join(empty) + ")")
        row = [x or 0 for x in self.con.execute(f"SELECT {', '.join(aggs)} FROM {table}").fetchone()]
        detail: dict[int, tuple] = {}
        parsed = [i for i, (kind, _) in enumerate(guesses) if kind not in ("keep", "text") and row[3 + 4 * i]]
        if parsed:
            num_re = NUM_COMMA_RE if self.decimal_comma else NUM_RE
            checks = []
            for i in parsed:
                x = f"x{i}"
                checks += [f"count_if({is_marker(trim(x))})", f"count_if({matches(x, HIGH_RE)})",
                           f"count_if({matches(x, LOW_RE)})", f"count_if({matches(x, num_re)})"]
            found = self.con.execute(f"SELECT {', '.join(checks)} FROM {table} WHERE "
                                     + " OR ".join(f"x{i} IS NOT NULL" for i in parsed)).fetchone()
            for k, i in enumerate(parsed):
                detail[i] = tuple(x or 0 for x in found[4 * k: 4 * k + 4])
        return row, detail

    def run(self, out_table: str) -> dict:
        guesses = self.guess_types()
        n = len(self.raw_cols)
        for attempt in range(4):  # a guess the whole column refutes falls back (integer -> number -> text)
            if attempt == 0:
                if self.before_load:
                    self.before_load()
                self.load_typed(out_table, guesses)
            else:
                self.load(out_table, guesses)
            row, detail = self.count(out_table, guesses)
            changed = False
            for i, (kind, _fmts) in enumerate(guesses):
                if kind in ("keep", "text"):
                    continue
                parsed, unparsed = row[2 + 4 * i], row[3 + 4 * i]
                markers, high, low, numbers = detail.get(i, (0, 0, 0, 0))
                values = parsed + unparsed - markers - (high + low if kind in NUMERIC_KINDS else 0)
                # decimals below integers (or below YYYYMMDD dates) make the column numbers, not losses
                widen = kind in ("integer", "ymd") and numbers > 0
                if values > 0 and parsed >= PARSE_SHARE * values and not widen:
                    continue
                fallback = FALLBACK[kind]
                if fallback == "number" and parsed + numbers < PARSE_SHARE * values:
                    fallback = "text"
                guesses[i], changed = (fallback, []), True
                if fallback == "text":
                    self.sample_numbers[i] = (parsed + numbers, parsed + unparsed - markers)
            if not changed:
                break
        rows_before, empty_rows = row[0], row[1]
        if rows_before == empty_rows:
            self.con.execute(f"DROP TABLE {out_table}")
            raise EmptyTable("no data rows below the header" if rows_before == 0 else "every row is empty")
        if empty_rows:  # deleting leaves gaps in rowid: rebuild so that row numbers stay contiguous
            empty = self.con.execute(f"SELECT rowid + 1 FROM {out_table} WHERE {self._empty_sql(guesses)} "
                                     f"ORDER BY rowid LIMIT {SHOWN_ROWS}").fetchall()
            self._rebuild(out_table, f"WHERE NOT ({self._empty_sql(guesses)})")
            self._note("dropped empty rows", None, rows=empty_rows,
                       detail="rows with no value in any column, as read: " + row_list([r[0] for r in empty], empty_rows))

        columns, select = [], []
        for i, (name, original) in enumerate(zip(self.names, self.original)):
            if name != original:
                self._routine("renamed column", name, detail=f"{original!r} -> {name}")
            kind, fmts = guesses[i]
            present, a, b, with_time = row[2 + 4 * i: 6 + 4 * i]
            unit = self.units[i]
            if kind in ("keep", "text"):
                if kind == "text":
                    self._text_notes(out_table, i, name, trimmed=a, markers=b)
                if present == 0:
                    self._note("dropped empty column", name, detail=f"{original!r} had no values")
                    continue
                ctype = "text" if kind == "text" else sql_type_kind(self.sql_types[i])
                select.append(f"v{i} AS {sql_ident(name)}")
            else:
                ctype, unit = self._parsed_notes(out_table, i, name, kind, fmts, present, detail.get(i), with_time, unit)
                if ctype is None:
                    continue
                select.append(f"p{i} AS {sql_ident(name)}")
            columns.append({"name": name, "original": original, "type": ctype, "unit": unit or None})
            if name in self.elapsed:
                columns[-1]["elapsed"] = True
            if name in self.flags:
                flag = self.flags[name]["flag_column"]
                select.append(f"CASE WHEN {matches(f'x{i}', RANGE_RE)} THEN trim(x{i}) END AS {sql_ident(flag)}")
                columns.append({"name": flag, "original": None, "type": "text", "unit": None, "flag_for": name})
        self._finish_columns(out_table, select, rows_before - empty_rows)
        # without dropping, identical rows are looked for later, while the plots are drawn
        duplicates = find_duplicates(self.con, out_table, [c["name"] for c in columns]) if self.drop_duplicates \
            else NOT_LOOKED
        if self.drop_duplicates and duplicates["count"]:
            self._rebuild(out_table, f"WHERE rowid NOT IN ({duplicates['rows_sql']})")
            self._note("dropped duplicate rows", None, rows=duplicates["count"],
                       detail="identical to an earlier row after cleaning, dropped as asked (--drop-duplicates); "
                              + row_list(duplicates["rows"], duplicates["count"]) + " as read")
        rows_after = self.con.execute(f"SELECT count(*) FROM {out_table}").fetchone()[0]
        return {"rows_before": rows_before, "columns_before": n, "rows_after": rows_after,
                "columns_after": len(columns), "empty_rows": empty_rows,
                "duplicate_rows": duplicates["count"], "duplicates": duplicates,
                "duplicates_dropped": duplicates["count"] if self.drop_duplicates else 0,
                "columns": columns, "audit": self.audit + group_routine(self.routine), "flags": self.flags}

    # -- per column audit -----------------------------------------------------
    def _empty_sql(self, guesses) -> str:
        return " AND ".join(f"v{i} IS NULL" if kind in ("keep", "text")
                            else f"(p{i} IS NULL AND (x{i} IS NULL OR {is_marker(trim(f'x{i}'))}))"
                            for i, (kind, _) in enumerate(guesses))

    def _finish_columns(self, table: str, select: list[str], rows: int) -> None:
        """The wide table becomes the cleaned one. Without new flag columns, dropping and renaming
        columns copies no data; flag columns sit beside their column, which takes a copy. A small
        table is copied anyway: one statement costs less than two ALTERs per column."""
        if self.flags or rows <= SMALL_COPY_ROWS:
            return self._rebuild(table, "", select)
        keep = dict(s.split(" AS ", 1) for s in select)
        for col in [c for c in self.con.sql(f"SELECT * FROM {table} LIMIT 0").columns if c not in keep]:
            self.con.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
        for col, name in keep.items():
            self.con.execute(f"ALTER TABLE {table} RENAME COLUMN {col} TO {name}")

    def _rebuild(self, table: str, where: str, select: list[str] | None = None) -> None:
        cols = ", ".join(select) if select else "*"
        self.con.execute(f"CREATE OR REPLACE TABLE {table}__new AS SELECT {cols} FROM {table} {where}")
        self.con.execute(f"DROP TABLE {table}")
        self.con.execute(f"ALTER TABLE {table}__new RENAME TO {table}")

def clean_table(con, view: str, names: list[str], out_table: str, decimal_comma: bool = False, **options) -> dict:
    return Cleaner(con, view, names, decimal_comma, **options).run(out_table)
