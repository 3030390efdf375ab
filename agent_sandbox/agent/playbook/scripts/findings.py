"""Findings: what a scientist should look at first in a cleaned table.

Each finding is {kind, column, rows, detail, count, rank, severity, labels, more}:
`rows` the first row numbers of the cleaned table it concerns (from 1, header
excluded, kept for compatibility); `labels` what a scientist calls those rows:
well names (`A4`, `D6 at 4 h` for a kinetic read), sample IDs (an ID-like
column), dates, else `row 213`; `more` how many were left out of `labels` (the
detail says "and N more" too). `severity` is "instrument" (saturated or
negative readings, wells that did not grow, blanks with signal), "data"
(duplicates, missing runs, outliers, ...) or "info" (long tails, the blanks
found); `rank` orders findings across tables, lower first, by kind (RANKING)
then by size. Every rule uses every row.

Self-contained: depends on duckdb and the sibling blanks.py, common.py, roles.py, layout.py.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import statistics

from blanks import blank_label_column, is_blank_name, well_range
from common import sql_ident
from layout import well_id
from roles import factor_preference, log_range, time_axis, usually_nonnegative

# (kind, severity), most important first: instrument problems, then the data's, then information.
RANKING = [("saturated", "instrument"), ("negative_values", "instrument"), ("no_growth", "instrument"),
           ("blank_signal", "instrument"), ("below_blank", "instrument"), ("below_detection", "instrument"),
           ("replicate_cv", "data"), ("duplicate_rows", "data"), ("missing_times", "data"), ("outliers", "data"),
           ("missing_together", "data"), ("mostly_missing", "data"), ("constant_column", "data"),
           ("long_tail", "info"), ("blanks", "info")]
KINDS = [k for k, _ in RANKING]
SEVERITY = dict(RANKING)
MOSTLY_MISSING_PCT = 90.0
FAR_OUT = 3.0             # Tukey's "far out": beyond 3 interquartile ranges from the quartiles
HIGH_CV = 0.20            # replicates more than 20% apart (coefficient of variation)
SHOWN = 20                # row numbers kept per finding
LABELS = 10               # labels named per finding; the rest are counted in `more`
MAX_PER_KIND = 10         # findings of one kind in a table; the rest are named in one more finding
MANY_COLUMNS = 5          # more columns than this with the same finding: one finding for all
MAX_OUTLIERS, OUTLIER_SHARE = 12, 0.01   # more far values than this are a long tail, not outliers
MAX_GRID = 100_000_000   # grid points counted in a bitmap (12 MB)
HEAD_TIMES = 2001         # the first sorted time points, to find a series' step
WHERE = "{where}"         # in a detail, replaced by the finding's labels ("A4, E8 and 3 more")
REPLICATE_NAME = re.compile(r"^(rep|repl|replicate|biological_replicate|technical_replicate|bio_rep|tech_rep)(_?\d+)?$")


def finding(kind: str, column: str | None, rows: list[int], detail: str, count: int | None = None, **extra) -> dict:
    return {"kind": kind, "column": column, "rows": list(rows[:SHOWN]), "detail": detail,
            "count": len(rows) if count is None else count, **extra}


def find_all(con, table: str, profile: dict, cleaned: dict, plate_map: dict | None = None) -> list[dict]:
    cols, rows = profile["column_profiles"], profile["rows"]
    groups = GroupSplit(con, table, cols)
    out = duplicates(cleaned["duplicates"], cleaned.get("duplicates_dropped", 0))
    out += constants(con, table, cols, rows)
    out += mostly_missing(con, table, cols, rows)
    out += missing_together(con, table, cols)
    out += outliers(con, table, cols, rows, groups)
    out += negatives(con, table, cols, groups)
    out += range_markers(cleaned.get("flags", {}))
    out += missing_times(con, table, cols, rows)
    if profile.get("growth"):
        out += growth_findings(profile["growth"])
    else:
        out += plate_checks(con, table, cols, plate_map or {})
    if profile.get("blanks"):
        out += endpoint_findings(profile["blanks"], cols)
    out += replicate_groups(con, table, cols)
    return finalize(con, table, profile, out)


# ---------------------------------------------------------------- naming, ranking, trimming

def finalize(con, table: str, profile: dict, found: list[dict]) -> list[dict]:
    """Sort by kind, keep MAX_PER_KIND of a kind (one more finding names the rest), then give
    each its labels, `more`, rank and severity, and put its labels in its detail."""
    found = sorted(found, key=lambda f: (KINDS.index(f["kind"]), -(f.get("count") or 0)))
    out: list[dict] = []
    for kind in KINDS:
        same = [f for f in found if f["kind"] == kind]
        out += same[:MAX_PER_KIND]
        if len(same) > MAX_PER_KIND:
            rest = same[MAX_PER_KIND:]
            named = [f["column"] or f.get("well") or "" for f in rest]
            out.append(finding(kind, None, [], f"and {len(rest)} more finding(s) of this kind: {WHERE}",
                               len(rest), labels=[n for n in named if n][:LABELS],
                               columns=[f["column"] for f in rest if f["column"]]))
    names = RowLabels(con, table, profile, out)
    position: dict[str, int] = {}
    for f in out:
        if "labels" not in f:
            f["labels"] = names.of(f)
        f["labels"] = [str(x) for x in f["labels"][:LABELS]]
        if "more" not in f:  # the rest of what it counts; findings that count other things set their own
            f["more"] = max(0, (f.get("count") or 0) - len(f["labels"])) if f["labels"] else 0
        f["detail"] = f["detail"].replace(WHERE, where_text(f["labels"], f["more"]))
        k = position[f["kind"]] = position.get(f["kind"], -1) + 1
        f["rank"] = (KINDS.index(f["kind"]) + 1) * 100 + min(k, 99)
        f["severity"] = SEVERITY[f["kind"]]
    return out


def where_text(labels: list[str], more: int) -> str:
    if not labels:
        return f"{more:,} in all" if more else "none named"
    return ", ".join(labels) + (f" and {more:,} more" if more else "")


def _fmt_time(value, unit: str | None) -> str:
    if isinstance(value, float):
        return f"{value:g}" + (f" {unit}" if unit else "")
    if hasattr(value, "isoformat"):
        text = value.isoformat(sep=" ") if hasattr(value, "hour") and hasattr(value, "date") else value.isoformat()
        return text[:-9] if text.endswith(" 00:00:00") else text
    return str(value) + (f" {unit}" if unit and isinstance(value, int) else "")


class RowLabels:
    """What a scientist calls a row: its well (a table of wells), its time with the well of the
    column (a kinetic read), an ID (an ID-like column), its date (a time series), else `row N`."""

    def __init__(self, con, table: str, profile: dict, found: list[dict]):
        cols = profile["column_profiles"]
        by_name = {c["name"]: c for c in cols}
        self.wells = {c["name"]: well_id(c["name"]) for c in cols if c["role"] == "well"}
        ids = [c for c in cols if c["role"] == "id"]
        time = time_axis(cols)
        self.unit = time.get("unit") if time else None
        if "well" in by_name and by_name["well"]["role"] == "plate":
            expr = ("'plate ' || CAST(plate AS VARCHAR) || ' ' || well" if "plate" in by_name and
                    (by_name["plate"].get("distinct") or 0) > 1 else "well")
            self.kind = "well"
        elif ids:
            expr, self.kind = sql_ident(sorted(ids, key=lambda c: c["type"] != "text")[0]["name"]), "id"
        elif time is not None and (time.get("distinct") or 0) >= 0.95 * (profile["rows"] - time["missing"]):
            expr, self.kind = sql_ident(time["name"]), "time"
        else:  # nothing names a row alone: its number, with what it is (species, year, ...)
            described = sorted([c for c in cols if c["role"] == "factor"], key=factor_preference)[:2]
            described += [time] if time is not None else []
            expr = ("'row ' || CAST(rowid + 1 AS VARCHAR)" + (" || ' (' || concat_ws(', ', " + ", ".join(
                f"CAST({sql_ident(c['name'])} AS VARCHAR)" for c in described) + ") || ')'" if described else ""))
            self.kind = "row"
        wanted = sorted({r for f in found for r in f["rows"][:LABELS]})
        self.names: dict[int, object] = {}
        if expr and wanted:
            self.names = dict(con.execute(f"SELECT rowid + 1, {expr} FROM {table} WHERE rowid + 1 IN "
                                          f"({', '.join(str(r) for r in wanted)})").fetchall())

    def one(self, row: int, column: str | None) -> str:
        value = self.names.get(row)
        if value is None:
            return f"row {row}"
        if self.kind == "time":
            text = _fmt_time(value, self.unit)
            return f"{self.wells[column]} at {text}" if column in self.wells else text
        return str(value)

    def of(self, f: dict) -> list[str]:
        return [self.one(r, f.get("column")) for r in f["rows"][:LABELS]]


class GroupSplit:
    """How the rows of a finding split across the table's main grouping column, in words:
    'all 12 are M (diagnosis)' or '9 Gentoo, 3 Adelie (species)'."""

    def __init__(self, con, table: str, cols: list[dict]):
        factors = sorted([c for c in cols if c["role"] == "factor" and 2 <= (c.get("distinct") or 0) <= 10],
                         key=factor_preference)
        self.con, self.table = con, table
        self.column = factors[0]["name"] if factors else None

    def text(self, condition: str) -> str:
        if self.column is None:
            return ""
        g = sql_ident(self.column)
        found = self.con.execute(f"SELECT CAST({g} AS VARCHAR), count(*) FROM {self.table} WHERE {condition} "
                                 f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 4").fetchall()
        total = sum(n for _, n in found)
        if not found or total < 2:
            return ""
        if len(found) == 1:
            return f"; all {total:,} are {found[0][0] if found[0][0] is not None else 'missing'} ({self.column})"
        return "; " + ", ".join(f"{n:,} {v if v is not None else 'missing'}" for v, n in found[:3]) \
            + (" ..." if len(found) > 3 else "") + f" ({self.column})"


# ---------------------------------------------------------------- rules on any table

def duplicates(dup: dict, dropped: int) -> list[dict]:
    if not dup["count"]:
        return []
    n = dup["count"]
    action = ("they were dropped as asked" if dropped else
              "they are kept, as repeat measurements usually are real data; --drop-duplicates (or asking to remove "
              "duplicates) drops them")
    return [finding("duplicate_rows", None, dup["rows"],
                    f"{n:,} row(s) identical to an earlier row (row {dup['rows'][0]} repeats row {dup['first_of'][0]}): "
                    f"{WHERE}; {action}", n)]


def constants(con, table: str, cols: list[dict], rows: int) -> list[dict]:
    found = [c for c in cols if c["role"] == "constant" and c["missing"] < rows]
    if not found or rows < 2:
        return []
    values = con.execute("SELECT " + ", ".join(f"min({sql_ident(c['name'])})" for c in found) + f" FROM {table}").fetchone()
    return [finding("constant_column", c["name"], [], f"every row with a value holds {v!r}"
                    + (f" ({c['missing']:,} rows are missing)" if c["missing"] else ""), 0)
            for c, v in zip(found, values)]


def mostly_missing(con, table: str, cols: list[dict], rows: int) -> list[dict]:
    out = []
    for c in cols:
        if c["role"] != "flag" and MOSTLY_MISSING_PCT <= c["missing_pct"] < 100:
            present = rows - c["missing"]
            where = con.execute(f"SELECT list(rowid + 1 ORDER BY rowid)[1:{SHOWN}] FROM {table} "
                                f"WHERE {sql_ident(c['name'])} IS NOT NULL").fetchone()[0] or []
            out.append(finding("mostly_missing", c["name"], where,
                               f"{c['missing_pct']}% missing: values in only {present:,} of {rows:,} rows ({WHERE})",
                               present))
    return out


def missing_together(con, table: str, cols: list[dict]) -> list[dict]:
    """Rows that miss the same set of columns together: a sample not measured, a failed read."""
    gaps = [c for c in cols if c["missing"] and c["role"] not in ("flag", "plate")
            and c["missing_pct"] < MOSTLY_MISSING_PCT][:62]
    if len(gaps) < 2:
        return []
    mask = " + ".join(f"(CASE WHEN {sql_ident(c['name'])} IS NULL THEN {1 << k} ELSE 0 END)::BIGINT"
                      for k, c in enumerate(gaps))
    patterns = con.execute(
        f"SELECT m, count(*), list(r ORDER BY r)[1:{SHOWN}] FROM (SELECT {mask} AS m, rowid + 1 AS r FROM {table}) "
        f"WHERE bit_count(m) >= 2 GROUP BY m HAVING count(*) >= 2 ORDER BY count(*) DESC LIMIT 3").fetchall()
    out = []
    for m, n, rows in patterns:
        names = [c["name"] for k, c in enumerate(gaps) if m >> k & 1]
        out.append(finding("missing_together", None, rows, f"{n:,} rows miss {', '.join(names)} together: {WHERE}",
                           n, columns=names))
    return out


def skewed(c: dict) -> bool:
    """Non-negative values with a long right tail (counts, concentrations): Pearson's skewness
    3 (mean - median) / sd above 1, or a quartile box twice as long above the median as below."""
    q1, med, q3, mean, sd = (c.get(k) for k in ("q25", "median", "q75", "mean", "std"))
    if None in (q1, med, q3, mean) or (c.get("min") or 0) < 0:
        return False
    return bool((sd and 3 * (mean - med) / sd > 1) or (q3 - med) > 2 * (med - q1) > 0)


def outlier_scale(c: dict) -> tuple[str, str, callable]:
    """(SQL expression, words, transform of a quartile): log10 for values spanning orders of
    magnitude, log(1 + x) for skewed non-negative values (counts), else the values themselves."""
    x = sql_ident(c["name"])
    if log_range(c):
        return f"log10({x})", " on a log scale", math.log10
    if skewed(c):
        return f"ln(1 + {x})", " on a log(1 + x) scale, as the values are skewed", math.log1p
    return x, "", float


def outliers(con, table: str, cols: list[dict], rows: int, groups: GroupSplit) -> list[dict]:
    """Values beyond 3 interquartile ranges from the quartiles, on a scale that suits the column.
    A few are outliers, named; many are a long tail, said once with its size."""
    checks = []
    for c in cols:
        q1, q3 = c.get("q25"), c.get("q75")
        if c["role"] != "measure" or q1 is None or q3 is None or c["distinct"] < 8:
            continue
        x, words, f = outlier_scale(c)
        lo, hi = f(q1), f(q3)
        iqr = hi - lo
        if iqr > 0:
            checks.append((c, x, words, lo - FAR_OUT * iqr, hi + FAR_OUT * iqr))
    if not checks:
        return []
    counts = con.execute("SELECT " + ", ".join(f"count_if({x} < {a!r}), count_if({x} > {b!r})" for _, x, _, a, b in checks)
                         + f" FROM {table}").fetchone()
    out = []
    for k, (c, x, words, a, b) in enumerate(checks):
        low, high = counts[2 * k], counts[2 * k + 1]
        n, values = low + high, rows - c["missing"]
        if not n:
            continue
        cond = f"({x} < {a!r} OR {x} > {b!r})"
        if n <= max(MAX_OUTLIERS, OUTLIER_SHARE * values):
            where, shown = con.execute(f"SELECT list(rowid + 1 ORDER BY rowid)[1:{SHOWN}], list({sql_ident(c['name'])} "
                                       f"ORDER BY rowid)[1:{LABELS}] FROM {table} WHERE {cond}").fetchone()
            out.append(finding("outliers", c["name"], where, f"{n:,} value(s) far from the rest (beyond {FAR_OUT:g} "
                               f"interquartile ranges{words}; median {c['median']:g}): "
                               + ", ".join(f"{v:g}" for v in shown) + f", in {WHERE}" + groups.text(cond), n))
        else:
            out.append(long_tail(con, table, c, high, low, values, words, b, groups, cond))
    return out


def long_tail(con, table: str, c: dict, high: int, low: int, values: int, words: str, bound: float,
              groups: GroupSplit, cond: str) -> dict:
    col = sql_ident(c["name"])
    p99 = con.execute(f"SELECT quantile_cont({col}, 0.99) FROM {table}").fetchone()[0]
    side = "right" if high >= low else "left"
    return finding("long_tail", c["name"], [], f"a long {side} tail, not {high + low:,} separate outliers: "
                   f"{high + low:,} of {values:,} values ({100 * (high + low) / values:.1f}%) lie beyond "
                   f"{FAR_OUT:g} interquartile ranges{words}; median {c['median']:g}, 99th percentile {p99:g}, "
                   f"max {c['max']:g}" + groups.text(cond) + ". Summaries robust to the tail (median, quartiles) "
                   "describe it better than the mean", high + low)


def negatives(con, table: str, cols: list[dict], groups: GroupSplit) -> list[dict]:
    found = [c for c in cols if c.get("negative") and usually_nonnegative(c) and c["role"] in ("measure", "well")]
    out = []
    for c in found if len(found) <= MANY_COLUMNS else []:
        cond = f"{sql_ident(c['name'])} < 0"
        rows = con.execute(f"SELECT list(rowid + 1 ORDER BY rowid)[1:{SHOWN}] FROM {table} WHERE {cond}").fetchone()[0]
        out.append(finding("negative_values", c["name"], rows, f"{c['negative']:,} negative value(s) (min {c['min']:g}) "
                           f"in a quantity that is usually zero or more: {WHERE}" + groups.text(cond), c["negative"]))
    if len(found) > MANY_COLUMNS:
        total = sum(c["negative"] for c in found)
        out.append(finding("negative_values", None, [], f"{total:,} negative value(s) in {len(found)} columns that are "
                           f"usually zero or more: " + ", ".join(f"{c['name']} (min {c['min']:g})" for c in found[:12]),
                           total, columns=[c["name"] for c in found],
                           labels=[(well_id(c["name"]) or c["name"]) for c in found],
                           more=max(0, len(found) - LABELS)))
    return out


def range_markers(flags: dict) -> list[dict]:
    out = []
    for side, kind, what in (("high", "saturated", "above the instrument's range (saturated)"),
                             ("low", "below_detection", "below the detection limit")):
        found = [(col, f[side]) for col, f in flags.items() if side in f]
        if len(found) > MANY_COLUMNS:
            total = sum(m["count"] for _, m in found)
            out.append(finding(kind, None, [], f"{total:,} reading(s) {what} in {len(found)} columns: "
                               + ", ".join(f"{c} ({m['count']})" for c, m in found[:12])
                               + "; missing values now, the marker kept in each <column>_flag", total,
                               columns=[c for c, _ in found], labels=[well_id(c) or c for c, _ in found],
                               more=max(0, len(found) - LABELS)))
            continue
        for col, m in found:
            out.append(finding(kind, col, m["rows"], f"{m['count']:,} reading(s) {what}: "
                               f"{', '.join(repr(v) for v in m['values'])} in {WHERE}; missing values now, the marker "
                               f"kept in {flags[col]['flag_column']}", m["count"]))
    return out


# ---------------------------------------------------------------- time series

STEP_NAMES = [(60, "minute"), (3600, "hour"), (86400, "day"), (7 * 86400, "week"), (30.44 * 86400, "month"),
              (91.3 * 86400, "quarter"), (365.25 * 86400, "year")]


def step_name(step: float, seconds: bool, unit: str | None) -> str:
    if seconds:
        for size, name in STEP_NAMES:
            if abs(step - size) <= 0.1 * size:
                return name
        return f"step of {step / 86400:g} days" if step >= 86400 else f"step of {step:g} s"
    return f"step of {step:g}" + (f" {unit}" if unit else "")


def time_grid(con, table: str, time: dict) -> dict | None:
    """The regular grid a time axis follows, or None: its first time, its step (from the first
    sorted time points, a top-N rather than a sort of the table), each row's grid index as SQL,
    and, in one aggregate pass, how many grid points hold rows and how many there are."""
    seconds = time["type"] in ("date", "datetime")
    t = sql_ident(time["name"])
    e = f"epoch(CAST({t} AS TIMESTAMP))" if seconds else f"CAST({t} AS DOUBLE)"
    head = [r[0] for r in con.execute(f"SELECT {e} FROM {table} WHERE {t} IS NOT NULL ORDER BY 1 LIMIT {HEAD_TIMES}"
                                      ).fetchall()]
    steps = sorted(b - a for a, b in zip(head, head[1:]) if b > a)
    if len(steps) < 5:
        return None
    step, lo = steps[len(steps) // 2], head[0]
    months = next((m for m, days in ((1, 30.44), (3, 91.3), (12, 365.25)) if seconds and
                   abs(step - days * 86400) <= 0.1 * days * 86400), None)
    if months:
        first = f"CAST(to_timestamp({lo!r}) AS DATE)"
        key, check = f"(date_diff('month', {first}, CAST({t} AS DATE)) // {months})", \
            f"date_diff('month', {first}, CAST({t} AS DATE)) % {months} = 0"
    else:
        key = f"CAST(round(({e} - {lo!r}) / {step!r}) AS BIGINT)"
        check = f"abs(({e} - {lo!r}) / {step!r} - round(({e} - {lo!r}) / {step!r})) < 0.1"
    last = con.execute(f"SELECT {key} FROM {table} WHERE {t} IS NOT NULL ORDER BY {t} DESC LIMIT 1").fetchone()[0]
    if last is None or last < 1 or last + 1 > MAX_GRID:
        return None
    # one pass: rows on the grid, and the grid points holding a row counted in a bitmap (no hash table)
    on_grid, rows, present = con.execute(
        f"SELECT count_if({check}), count(*), bit_count(bitstring_agg({key}, 0, {last}) FILTER (WHERE {check} AND "
        f"{key} BETWEEN 0 AND {last})) FROM {table} WHERE {t} IS NOT NULL").fetchone()
    if on_grid < 0.95 * rows or not present or rows < 0.5 * (last + 1) or present < 0.9 * rows:
        return None  # irregular, mostly empty, or several rows per time point (a grouped series)
    return {"key": key, "lo": lo, "step": step, "months": months, "present": present, "points": last + 1,
            "seconds": seconds, "date": time["type"] == "date", "unit": time.get("unit"),
            "name": step_name(months * 30.44 * 86400 if months else step, seconds, time.get("unit"))}


def grid_time(grid: dict, k: int) -> str:
    """The time of grid point k, as the report writes it."""
    if not grid["seconds"]:
        return _fmt_time(float(grid["lo"] + k * grid["step"]), grid["unit"])
    start = dt.datetime.fromtimestamp(grid["lo"], dt.UTC).replace(tzinfo=None)
    if grid["months"]:
        month = start.month - 1 + k * grid["months"]
        start = start.replace(year=start.year + month // 12, month=month % 12 + 1, day=min(start.day, 28))
        at = start
    else:
        at = start + dt.timedelta(seconds=k * grid["step"])
    return _fmt_time(at.date() if grid["date"] else at, None)


def _runs(con, keys_sql: str) -> list[tuple[int, int, int]]:
    """(first, last, length) of each run of consecutive grid indexes in `keys_sql` (a k column)."""
    return con.execute(f"SELECT min(k), max(k), count(*) FROM (SELECT k, k - row_number() OVER (ORDER BY k) AS run "
                       f"FROM ({keys_sql})) GROUP BY run ORDER BY 1").fetchall()


def missing_times(con, table: str, cols: list[dict], rows: int) -> list[dict]:
    """A regular time series (one row per time point on a grid of equal steps, or of months) with
    time points missing, or with a measure missing at some of them: runs of missing steps, named
    by date. Only the missing points are sorted, never the table."""
    time = time_axis(cols)
    if time is None or rows < 12 or (time.get("distinct") or 0) < 0.9 * (rows - time["missing"]):
        return []  # no time axis, or several rows per time point
    grid = time_grid(con, table, time)
    if grid is None:
        return []
    t, name = sql_ident(time["name"]), grid["name"]
    plural = name + "s" if not name.startswith("step") else "steps"
    out = []
    if grid["points"] > grid["present"]:
        runs = _runs(con, f"SELECT r.k FROM range(0, {grid['points']}) r(k) ANTI JOIN "
                          f"(SELECT DISTINCT {grid['key']} AS k FROM {table} WHERE {t} IS NOT NULL) p ON r.k = p.k")
        missing = sum(n for _, _, n in runs)
        first, _, longest = max(runs, key=lambda r: r[2])
        out.append(finding("missing_times", time["name"], [], f"{missing:,} {plural} missing from a regular series "
                           f"(one row per {name}) in {len(runs):,} run(s), the longest {longest:,} {plural} after "
                           f"{grid_time(grid, first - 1)}: {WHERE}", missing,
                           labels=[f"after {grid_time(grid, a - 1)}" for a, _, _ in runs[:LABELS]],
                           more=max(0, len(runs) - LABELS)))
    flagged = {c.get("flag_for") for c in cols}  # missing because out of range: said by their own finding
    for c in [c for c in cols if c["role"] == "measure" and 0 < c["missing"] < rows and c["name"] not in flagged
              ][:MANY_COLUMNS]:
        runs = _runs(con, f"SELECT DISTINCT {grid['key']} AS k FROM {table} WHERE {t} IS NOT NULL "
                          f"AND {sql_ident(c['name'])} IS NULL")
        total = sum(n for _, _, n in runs)
        first, _, longest = max(runs, key=lambda r: r[2]) if runs else (0, 0, 0)
        if longest < 2:
            continue  # scattered single readings are counted in the column's missing values; runs matter
        out.append(finding("missing_times", c["name"], [], f"{total:,} {plural} without a {c['name']} value in "
                           f"{len(runs):,} run(s) of a regular series, the longest {longest:,} {plural} from "
                           f"{grid_time(grid, first)}: {WHERE}", total,
                           labels=[grid_time(grid, a) + (f" to {grid_time(grid, b)}" if n > 1 else "")
                                   for a, b, n in runs[:LABELS]], more=max(0, len(runs) - LABELS)))
    return out


# ---------------------------------------------------------------- plates

def growth_findings(g: dict) -> list[dict]:
    """What the growth analysis of a kinetic read says a scientist must know."""
    out = []
    params = {p["well"]: p for p in g["parameters"]}
    col = g.get("columns") or {}
    unit = g.get("unit") or "OD"
    flat = [w for w, p in params.items() if p["role"] == "sample" and not p["grew"]]
    if flat:
        out.append(finding("no_growth", None, [], f"{len(flat)} sample well(s) did not grow: {WHERE}. They rose less "
                           f"than {g['grew_threshold']:g} {unit} above the blank in {g['hours']:g} h (10 x the blanks' "
                           f"noise, or a tenth of the largest rise): empty, not inoculated, or dead; they get no "
                           f"growth rate", len(flat), labels=flat, wells=flat))
    for w in g["grown_blanks"]:
        out.append(finding("blank_signal", col.get(w, w).lower() if col else w, [], f"blank well {w} rose "
                           f"{params[w]['max_od']:g} {unit} like a sample: contamination, or a mislabelled well? It is "
                           f"left out of the blank", 1, labels=[w], well=w))
    for n in g["negative"]["beyond_noise"]:
        out.append(finding("below_blank", col.get(n["well"], n["well"]), [], f"well {n['well']} reads below the blanks "
                           f"by more than their noise ({n['reads']} read(s), down to {n['min']:g} {unit} at "
                           f"{n['time_h']:g} h): a bubble, condensation, or a blank well with more background than "
                           f"this one?", 1, labels=[n["well"]], well=n["well"]))
    out += growth_replicates(g, params)
    blanks = g["blanks"]
    if blanks["wells"]:
        neg = g["negative"]
        noise = (f" After subtraction {neg['count']:,} reading(s) are slightly below zero (down to {neg['min']:g}): "
                 f"within the blanks' noise (SD {g['noise']:.2g}), expected when a blank is subtracted, not an error."
                 if neg["count"] and not neg["beyond_noise"] else "")
        out.append(finding("blanks", None, [], f"blanks {well_range(blanks['wells'])}: {blanks['rule']}. Their median "
                           f"at each read (about {g['blank_level']:g} {unit}) is subtracted from every well." + noise,
                           len(blanks["wells"]), labels=blanks["wells"], wells=blanks["wells"]))
    else:
        out.append(finding("blanks", None, [], f"no blank wells: {blanks['rule']}. The curves are not blank-corrected, "
                           f"so the growth rates from ln {unit} are underestimated by the background", 0, labels=[]))
    return out


def growth_replicates(g: dict, params: dict) -> list[dict]:
    """Replicate wells of one sample (from the plate map) whose growth rate or max OD differ."""
    groups: dict[str, list[str]] = {}
    for w, name in (g.get("conditions") or {}).items():
        if params.get(w, {}).get("role") == "sample":
            groups.setdefault(name, []).append(w)
    out = []
    for name, wells in groups.items():
        for value, words in (("max_od", "max OD"), ("growth_rate_per_h", "growth rate")):
            vals = [params[w][value] for w in wells if params[w][value] is not None]
            if len(vals) >= 2 and statistics.mean(vals) > 0:
                cv = statistics.stdev(vals) / statistics.mean(vals)
                if cv > HIGH_CV:
                    out.append(finding("replicate_cv", value, [], f"replicates of {name!r} ({WHERE}) differ by CV "
                                       f"{cv:.0%} in {words} ({', '.join(f'{v:g}' for v in vals)})", len(wells),
                                       labels=wells, wells=wells))
                    break
    return out


def endpoint_findings(b: dict, cols: list[dict]) -> list[dict]:
    """The blanks of a table of wells, and wells that read below them."""
    if not b["wells"]:
        return []
    unit = next((c.get("unit") for c in cols if c["name"] == b["value"] and c.get("unit")), "")
    levels = b.get("levels") or {}
    others = [v for w, v in levels.items() if w not in b["wells"] and v is not None]
    above = f"; the other wells read {min(others) - b['level']:+.3g} to {max(others) - b['level']:+.3g} from it" \
        if others else ""
    out = [finding("blanks", b["value"], [], f"blanks {well_range(b['wells'])}: {b['rule']}; blank level "
                   f"{b['level']:g}{' ' + unit if unit else ''} (median; spread {b['spread']:g}){above}",
                   len(b["wells"]), labels=b["wells"], wells=b["wells"])]
    below = sorted((w for w, v in levels.items() if w not in b["wells"] and v is not None
                    and v < b["level"] - max(b["spread"], 1e-9)), key=lambda w: levels[w])
    if below:
        out.append(finding("below_blank", b["value"], [], f"{len(below)} well(s) read below every blank ({WHERE}): "
                           f"a bubble, an empty well, or blanks with more background than these wells?", len(below),
                           labels=below, wells=below))
    return out


def plate_checks(con, table: str, cols: list[dict], plate_map: dict) -> list[dict]:
    """Blank wells that read like samples, and replicate wells (same sample name) far apart.
    Wells are a table of wells (one row each, with sample names from a layout or plate map)
    or well columns (with the plate map's names), judged by their highest reading."""
    by_name = {c["name"]: c for c in cols}
    wells: dict[str, float] = {}
    where: dict[str, int] = {}
    labels: dict[str, dict[str, str]] = {}
    what = "highest reading"
    value = None
    if "well" in by_name and by_name["well"]["role"] == "plate":
        measures = [c for c in cols if c["role"] == "measure"]
        label_cols = [c["name"] for c in cols if c["role"] == "label"]
        if not measures or not label_cols:
            return []
        value = measures[0]["name"]
        plate = "plate" if "plate" in by_name else "1"
        data = con.execute(f"SELECT well, {plate}, rowid + 1, {sql_ident(value)}, "
                           + ", ".join(sql_ident(c) for c in label_cols) + f" FROM {table} "
                           f"WHERE {sql_ident(value)} IS NOT NULL").fetchall()
        if "plate" in by_name and len({r[1] for r in data}) > 1:
            data = [r for r in data if r[1] == data[0][1]]  # the first plate: a layout per plate is not known
        wells = {r[0]: r[3] for r in data}
        where = {r[0]: r[2] for r in data}
        labels = {name: {r[0]: r[4 + k] for r in data if r[4 + k]} for k, name in enumerate(label_cols)}
        what = value
    else:
        well_cols = [c for c in cols if c["role"] == "well" and c.get("max") is not None]
        if not well_cols or not plate_map:
            return []
        wells = {well_id(c["name"]): c["max"] for c in well_cols}
        labels = {name: {w: v for w, v in m.items() if w in wells} for name, m in plate_map.items()}
    out = []
    blank_col = blank_label_column(labels)
    names = labels.get(blank_col) or next(iter(labels.values()), {})
    blanks = [w for w, v in names.items() if is_blank_name(v) and w in wells]
    samples = [w for w, v in names.items() if not is_blank_name(v) and w in wells]
    if blanks and samples:
        levels = sorted(wells[w] for w in blanks)
        baseline = statistics.median(levels) if len(blanks) >= 3 else min(wells.values())
        signal = statistics.median(wells[w] for w in samples)
        if signal > baseline:
            for w in blanks:
                if wells[w] >= baseline + 0.5 * (signal - baseline):
                    out.append(finding("blank_signal", what if value else w.lower(), [where[w]] if w in where else [],
                                       f"blank well {w} ({names[w]!r}) reads {wells[w]:g} ({what}), nearer the samples' "
                                       f"median {signal:g} than the blanks' {baseline:g}: contamination, or a "
                                       f"mislabelled well?", 1, well=w, labels=[w]))
    groups: dict[str, list[str]] = {}
    for w in samples:
        groups.setdefault(names[w], []).append(w)
    for label, members in groups.items():
        vals = [wells[w] for w in members]
        if len(vals) >= 2 and statistics.mean(vals) > 0:
            cv = statistics.stdev(vals) / statistics.mean(vals)
            if cv > HIGH_CV:
                out.append(finding("replicate_cv", value, sorted(where[w] for w in members if w in where),
                                   f"replicates of {label!r} (wells {', '.join(members)}) differ by CV {cv:.0%} "
                                   f"({what}: {', '.join(f'{v:g}' for v in vals)})", len(members), wells=members,
                                   labels=members))
    return out


def replicate_groups(con, table: str, cols: list[dict]) -> list[dict]:
    """With a replicate column, rows that share every other factor are replicates of one condition."""
    rep = next((c for c in cols if REPLICATE_NAME.match(c["name"])), None)
    if rep is None:
        return []
    keys = [c["name"] for c in cols if c["role"] in ("factor", "label", "time") and c is not rep]
    measures = [c["name"] for c in cols if c["role"] == "measure" and c is not rep][:20]
    if not keys or not measures:
        return []
    group = ", ".join(sql_ident(k) for k in keys)
    out = []
    for m in measures:
        col = sql_ident(m)
        found = con.execute(
            f"SELECT {group}, stddev_samp({col}) / avg({col}) AS cv, count({col}), list(rowid + 1 ORDER BY rowid)[1:{SHOWN}] "
            f"FROM {table} GROUP BY {group} HAVING count({col}) >= 2 AND avg({col}) > 0 AND "
            f"stddev_samp({col}) / avg({col}) > {HIGH_CV} ORDER BY cv DESC LIMIT 3").fetchall()
        for r in found:
            condition = ", ".join(f"{k}={v}" for k, v in zip(keys, r[: len(keys)]))
            cv, n, rows = r[len(keys):]
            out.append(finding("replicate_cv", m, rows, f"{n} replicates of {condition} differ by CV {cv:.0%} in {m} "
                               f"({WHERE})", n))
    return out
