"""Result tables explored on the server: sort, filter, page and choose columns over the
whole table with DuckDB reading the agent's Parquet (or CSV) file, never the browser's
first rows.

A view is what a URL says (`View.from_args`): `sort=<column>` (`-<column>` for
descending), `limit`, `offset`, `columns=a,b` and one filter per parameter
`<column>__<op>=<value>` with op one of exact, contains, gte, lte (a range is
both), isnull, notnull. The same view answers as a page, as JSON and as CSV.

Agent-written files are untrusted, so every read is bounded whatever the file
holds. A Parquet file's footer is read first (at most MAX_FOOTER bytes): a
column whose row groups hold more than MAX_BYTES_PER_ROW per row on average,
or more than MAX_CHUNK in one row group, is never read (its cells show as too
large; it cannot be sorted or filtered), so a 34 KB file of 40 MB cells costs
nothing. Every query then runs in its own DuckDB database with a memory limit
(what the footer does not say, or says falsely, fails that query, not the
server), at most QUERIES_AT_ONCE at a time, interrupted after QUERY_SECONDS;
cells are cut to MAX_CELL characters in SQL, before they reach Python. DuckDB
releases the GIL while it works, so a slow view holds no other request.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import posixpath
import queue
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

DATA_TYPES = (".parquet", ".csv", ".tsv")
MAX_CELL = 200                 # characters of a cell shown in a page or JSON
MAX_EXPORT_CELL = 10_000       # characters of a cell in a CSV download
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
MEMORY_LIMIT = "256MB"         # per query: a hostile file fails its query, not the server
THREADS = 2
QUERIES_AT_ONCE = 2            # so all table views together use at most 2 x MEMORY_LIMIT
QUERY_SECONDS = 20.0
MAX_BYTES_PER_ROW = 64 * 1024  # a Parquet column averaging more per row in a row group is not read
MAX_CHUNK = 256 * 1024 * 1024  # nor one with a larger row group (decompressed)
MAX_FOOTER = 16 * 1024 * 1024
WAIT_SECONDS = 30.0
OPS = {"exact": "equals", "contains": "contains", "gte": "at least", "lte": "at most",
       "isnull": "is missing", "notnull": "is present"}
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")
PLAIN = NUMERIC + ("BOOLEAN", "DATE", "TIMESTAMP", "TIME", "INTERVAL", "TIMESTAMP WITH TIME ZONE")
RESERVED = ("sort", "limit", "offset", "columns", "format")
GLOB = ("*", "?", "[", "{")
ROW_NUMBER = "file_row_number"  # DuckDB's Parquet row number: ties in a sort keep the file's order

class ViewError(ValueError):
    """A view the table cannot give (an unknown column, a value that is not a number): a 400."""


class TableBusy(RuntimeError):
    """Every query slot stayed taken for WAIT_SECONDS: a 503."""


# -- which tables a job has --------------------------------------------------------------------

def find_tables(paths: list[str]) -> dict[str, str]:
    """Table name -> its data file, one per table: the Parquet file when the same table also
    has a CSV (it knows its types). Names are file stems, made unique with their folder."""
    by_base: dict[str, str] = {}
    for path in sorted(paths):
        if not path.lower().endswith(DATA_TYPES) or path.split("/")[0] in ("scripts", "inputs"):
            continue
        base = posixpath.splitext(path)[0]
        if base not in by_base or path.lower().endswith(".parquet"):
            by_base[base] = path
    names: dict[str, str] = {}
    for base in sorted(by_base, key=lambda b: (b.count("/"), b)):
        name = posixpath.basename(base)
        if name in names or not name:
            name = base.replace("/", "-")
        names[name] = by_base[base]
    return names


# -- a view: what the URL asks for -------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: str = ""

    @property
    def param(self) -> str:
        return f"{self.column}__{self.op}"

    def describe(self) -> str:
        return f"{self.column} {OPS[self.op]}" + ("" if self.op in ("isnull", "notnull") else f" {self.value}")


@dataclass(frozen=True)
class View:
    sort: str = ""                 # a column name; "" keeps the file's order
    descending: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    columns: tuple[str, ...] = ()  # () shows every column
    filters: tuple[Filter, ...] = field(default_factory=tuple)

    @classmethod
    def from_args(cls, args: Mapping[str, Any], columns: list[str]) -> View:
        """The view `args` (a request's query string, a MultiDict or a dict) ask for, checked
        against the table's `columns`; a ViewError says what is wrong in one line."""
        get = args.get
        known = set(columns)
        sort = (get("sort") or "").strip()
        descending = sort.startswith("-")
        sort = sort[1:] if descending else sort
        if sort and sort not in known:
            raise ViewError(f"cannot sort by {sort!r}: the table has no such column")
        chosen = tuple(c for c in (get("columns") or "").split(",") if c)
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise ViewError(f"no column {unknown[0]!r} in this table")
        filters = []
        items = args.items(multi=True) if hasattr(args, "getlist") else args.items()
        for key, value in items:
            if key in RESERVED:
                continue
            column, _, op = key.rpartition("__")
            if op not in OPS or column not in known:
                raise ViewError(f"unknown filter {key!r}: use <column>__<op> with op one of {', '.join(OPS)}")
            if op not in ("isnull", "notnull") and value == "":
                continue  # an empty box in the filter form filters nothing
            filters.append(Filter(column, op, str(value)))
        return cls(sort=sort, descending=descending, limit=_int(get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT, "limit"),
                   offset=_int(get("offset"), 0, 0, 10**12, "offset"), columns=chosen, filters=tuple(filters))

    def to_args(self, **changes: Any) -> dict[str, Any]:
        """The query string of this view (with `changes`), leaving out what is the default."""
        view = replace(self, **changes)
        args: dict[str, Any] = {}
        if view.sort:
            args["sort"] = ("-" if view.descending else "") + view.sort
        if view.columns:
            args["columns"] = ",".join(view.columns)
        for f in view.filters:
            args[f.param] = f.value if f.op not in ("isnull", "notnull") else "1"
        if view.limit != DEFAULT_LIMIT:
            args["limit"] = view.limit
        if view.offset:
            args["offset"] = view.offset
        return args

    def sorted_by(self, column: str) -> dict[str, Any]:
        """The query string after a click on `column`'s header: ascending, then descending."""
        descending = self.sort == column and not self.descending
        return self.to_args(sort=column, descending=descending, offset=0)

    def without(self, f: Filter) -> dict[str, Any]:
        return self.to_args(filters=tuple(x for x in self.filters if x != f), offset=0)


def is_numeric(sql_type: str) -> bool:
    return sql_type.upper().startswith(NUMERIC)


def _int(text: Any, default: int, low: int, high: int, name: str) -> int:
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ViewError(f"{name} must be a whole number, not {str(text)[:40]!r}") from None
    return min(max(value, low), high)


# -- running a view ----------------------------------------------------------------------------

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _source(path: Path, row_number: bool) -> tuple[str, list]:
    if path.suffix.lower() == ".parquet":
        return f"read_parquet(?{', file_row_number=true' if row_number else ''})", [str(path)]
    delim = ", delim='\\t'" if path.suffix.lower() == ".tsv" else ""
    return f"read_csv(?, max_line_size=2000000{delim})", [str(path)]


def oversized_columns(path: Path) -> dict[str, str]:
    """Top-level columns of a Parquet file too large to read, by their footer: {name: why}."""
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < 12:
            raise ViewError("this Parquet file is too short to be one")
        f.seek(size - 8)
        footer, magic = struct.unpack("<I4s", f.read(8))
    if magic != b"PAR1" or footer > min(MAX_FOOTER, size):
        raise ViewError("this Parquet file's footer is missing or too large to read")
    meta = pq.ParquetFile(path).metadata
    names = sorted(meta.schema.to_arrow_schema().names, key=len, reverse=True)
    worst: dict[str, tuple[float, int]] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        rows = max(group.num_rows, 1)
        for c in range(group.num_columns):
            chunk = group.column(c)
            leaf = chunk.path_in_schema
            name = next((n for n in names if leaf == n or leaf.startswith(n + ".")), leaf)
            size = max(chunk.total_uncompressed_size, chunk.total_compressed_size)
            per_row, largest = worst.get(name, (0.0, 0))
            worst[name] = (max(per_row, size / rows), max(largest, size))
    return {name: f"{_mb(per_row)} per row, {_mb(largest)} in one row group"
            for name, (per_row, largest) in worst.items() if per_row > MAX_BYTES_PER_ROW or largest > MAX_CHUNK}


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:,.1f} MB" if n >= 100 * 1024 else f"{n / 1024:,.1f} KB"


class Table:
    """One table file: its columns and types, and the rows of any view of it."""

    def __init__(self, path: Path, tmp_dir: Path | None = None):
        self.path, self.tmp_dir = Path(path), tmp_dir
        if any(c in self.path.name for c in GLOB):  # DuckDB would read the name as a pattern of files
            raise ViewError(f"{self.path.name!r} cannot be read as a table: DuckDB would read its name as a "
                            f"pattern (it holds one of {' '.join(GLOB)})")
        parquet = self.path.suffix.lower() == ".parquet"
        self.oversized = oversized_columns(self.path) if parquet else {}
        described = self._run(lambda con: con.execute(f"DESCRIBE SELECT * FROM {_source(self.path, False)[0]}",
                                                      _source(self.path, False)[1]).fetchall())
        self.types = {row[0]: str(row[1]) for row in described}
        self.columns = list(self.types)
        self._row_number = parquet and ROW_NUMBER not in self.types

    def numeric(self, column: str) -> bool:
        return is_numeric(self.types.get(column, ""))

    def view(self, view: View) -> dict[str, Any]:
        """{columns, types, rows, total}: one page of the view, cells cut to MAX_CELL."""
        shown = list(view.columns) or self.columns
        source, params = _source(self.path, self._row_number)
        where, where_params = self._where(view.filters)
        select = ", ".join(self._cell(c, MAX_CELL) for c in shown)
        # No OFFSET 0: with one, DuckDB holds whole cells before the limit (a file of huge cells
        # then fails even its first page).
        page = f" LIMIT {view.limit}" + (f" OFFSET {view.offset}" if view.offset else "")
        query = f"SELECT {select} FROM {source}{where}{self._order(view)}{page}"

        def run(con):
            rows = con.execute(query, params + where_params).fetchall()
            total = con.execute(f"SELECT count(*) FROM {source}{where}", params + where_params).fetchone()[0]
            return rows, total

        rows, total = self._run(run)
        return {"columns": shown, "types": {c: self.types[c] for c in shown},
                "rows": [[_json_cell(v) for v in row] for row in rows], "total": total}

    def export_csv(self, view: View, dest: Path) -> Path:
        """The whole view (every matching row, in its order, its columns) as a CSV file at `dest`."""
        shown = list(view.columns) or self.columns
        source, params = _source(self.path, self._row_number)
        where, where_params = self._where(view.filters)
        select = ", ".join(f"{self._cell(c, MAX_EXPORT_CELL)} AS {_ident(c)}" for c in shown)
        query = f"SELECT {select} FROM {source}{where}{self._order(view)}"
        target = str(dest).replace("'", "''")
        self._run(lambda con: con.execute(f"COPY ({query}) TO '{target}' (FORMAT csv, HEADER true)",
                                          params + where_params))
        return dest

    # -- SQL pieces ------------------------------------------------------------------------

    def _cell(self, column: str, cap: int) -> str:
        if column in self.oversized:   # never read: its cells are said to be too large
            return "'(too large to show: " + self.oversized[column] + ")'"
        kind = self.types[column].upper()
        ident = _ident(column)
        if kind.startswith(PLAIN):
            return ident
        text = ident if kind == "VARCHAR" else f"CAST({ident} AS VARCHAR)"
        return f"CASE WHEN length({text}) > {cap} THEN left({text}, {cap - 1}) || '…' ELSE {text} END"

    def _usable(self, column: str, what: str) -> None:
        if column in self.oversized:
            raise ViewError(f"cannot {what} {column}: its cells are too large ({self.oversized[column]})")

    def _order(self, view: View) -> str:
        keys = []
        if view.sort:
            self._usable(view.sort, "sort by")
        if view.sort:
            keys.append(f"{_ident(view.sort)} {'DESC' if view.descending else 'ASC'} NULLS LAST")
        if keys and self._row_number:  # unsorted, DuckDB keeps the file's order by itself
            keys.append(ROW_NUMBER)
        return (" ORDER BY " + ", ".join(keys)) if keys else ""

    def _where(self, filters: tuple[Filter, ...]) -> tuple[str, list]:
        parts, params = [], []
        for f in filters:
            self._usable(f.column, "filter")
            ident, kind = _ident(f.column), self.types[f.column]
            if f.op == "isnull":
                parts.append(f"{ident} IS NULL")
            elif f.op == "notnull":
                parts.append(f"{ident} IS NOT NULL")
            elif f.op == "contains":
                parts.append(f"contains(lower(CAST({ident} AS VARCHAR)), lower(?))")
                params.append(f.value)
            else:
                sign = {"exact": "=", "gte": ">=", "lte": "<="}[f.op]
                if self.numeric(f.column):
                    params.append(_number(f))
                    parts.append(f"{ident} {sign} CAST(? AS DOUBLE)")
                elif kind.upper().startswith(PLAIN):
                    params.append(f.value)
                    parts.append(f"{ident} {sign} TRY_CAST(? AS {kind})")
                else:
                    params.append(f.value)
                    parts.append(f"CAST({ident} AS VARCHAR) {sign} ?")
        return (" WHERE " + " AND ".join(parts)) if parts else "", params

    # -- one bounded DuckDB run ------------------------------------------------------------

    def _run(self, work):
        con = _pool.take(self.tmp_dir)
        timer = threading.Timer(QUERY_SECONDS, con.interrupt)
        timer.start()
        healthy = True
        try:
            return work(con)
        except duckdb.InterruptException:
            raise ViewError(f"this view took longer than {QUERY_SECONDS:g} s; filter the table first") from None
        except duckdb.OutOfMemoryException:
            raise ViewError("this view needs more memory than a table view may use (its cells are very "
                            "large); choose fewer columns or download the file") from None
        except duckdb.FatalException:
            healthy = False
            raise
        finally:
            timer.cancel()
            _pool.give_back(con, healthy)


class _Connections:
    """QUERIES_AT_ONCE DuckDB databases in memory, each with its own memory limit, made when first
    needed and kept: a view waits (at most WAIT_SECONDS) for a free one."""

    def __init__(self, size: int):
        self._free: queue.LifoQueue = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def take(self, tmp_dir: Path | None) -> duckdb.DuckDBPyConnection:
        if not self._slots.acquire(timeout=WAIT_SECONDS):
            raise TableBusy("the server is busy with other table views; try again in a moment")
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        try:
            config = {"memory_limit": MEMORY_LIMIT, "threads": THREADS}
            if tmp_dir is not None:
                config |= {"temp_directory": str(tmp_dir), "max_temp_directory_size": "1GB"}
            con = duckdb.connect(config=config)
            con.execute("SET enable_progress_bar = false")
            return con
        except BaseException:
            self._slots.release()
            raise

    def give_back(self, con, healthy: bool = True) -> None:
        if healthy:
            self._free.put(con)
        else:
            con.close()
        self._slots.release()


_pool = _Connections(QUERIES_AT_ONCE)


def kind_of(sql_type: str) -> str:
    """A column's type in a scientist's words: integer, number, text, date, ..."""
    t = sql_type.upper()
    if t.startswith(("FLOAT", "DOUBLE", "DECIMAL", "REAL")):
        return "number"
    if t.startswith(NUMERIC):
        return "integer"
    for prefix, word in (("VARCHAR", "text"), ("BOOLEAN", "yes/no"), ("TIMESTAMP", "date-time"),
                         ("DATE", "date"), ("TIME", "time"), ("INTERVAL", "duration")):
        if t.startswith(prefix):
            return word
    return t.lower()


def _number(f: Filter) -> float:
    try:
        return float(f.value)
    except ValueError:
        raise ViewError(f"{f.column} holds numbers: {f.value[:40]!r} is not one") from None


def _json_cell(value: Any) -> Any:
    """A cell as JSON can carry it: numbers stay numbers (NaN and infinities become text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return str(value)[:MAX_CELL]
