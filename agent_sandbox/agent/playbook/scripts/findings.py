"""Findings: what a scientist should look at first in a cleaned table.

Each finding is {kind, column, rows, detail, count} with `rows` the first row
numbers of the cleaned table it concerns (from 1, header excluded). They are
ordered by importance, in the order of KINDS. Every rule uses every row.

Self-contained: depends on duckdb and the sibling common.py, roles.py, layout.py.
"""

from __future__ import annotations

import math
import re
import statistics

from common import row_list, sql_ident
from layout import well_id
from roles import log_range, usually_nonnegative

KINDS = ["duplicate_rows", "constant_column", "mostly_missing", "missing_together", "outliers", "negative_values",
         "saturated", "below_detection", "blank_signal", "replicate_cv"]
MOSTLY_MISSING_PCT = 90.0
FAR_OUT = 3.0             # Tukey's "far out": beyond 3 interquartile ranges from the quartiles
HIGH_CV = 0.20            # replicates more than 20% apart (coefficient of variation)
SHOWN = 20                # row numbers kept per finding
MAX_PER_KIND = 10
MANY_COLUMNS = 5          # more columns than this with the same finding: one finding for all
MAX_OUTLIERS, OUTLIER_SHARE = 5, 0.02   # more far values than this are a long tail, not outliers
BLANK = re.compile(r"^(blank|blk|bl|bk|medium|media|buffer|empty|no[ _-]?cells?|background|bkg|bg|neg|negative|"
                   r"neg[ _-]?ctrl|water|h2o|mock)[ _-]?\d*$", re.IGNORECASE)
REPLICATE_NAME = re.compile(r"^(rep|repl|replicate|biological_replicate|technical_replicate|bio_rep|tech_rep)(_?\d+)?$")


def finding(kind: str, column: str | None, rows: list[int], detail: str, count: int | None = None, **extra) -> dict:
    return {"kind": kind, "column": column, "rows": list(rows[:SHOWN]), "detail": detail,
            "count": len(rows) if count is None else count, **extra}


def find_all(con, table: str, profile: dict, cleaned: dict, plate_map: dict | None = None) -> list[dict]:
    cols, rows = profile["column_profiles"], profile["rows"]
    out = duplicates(cleaned["duplicates"], cleaned.get("duplicates_dropped", 0))
    out += constants(con, table, cols, rows)
    out += mostly_missing(con, table, cols, rows)
    out += missing_together(con, table, cols)
    out += outliers(con, table, cols, rows)
    out += negatives(con, table, cols)
    out += range_markers(cleaned.get("flags", {}))
    out += plate_checks(con, table, cols, plate_map or {})
    out += replicate_groups(con, table, cols)
    return sorted(out, key=lambda f: KINDS.index(f["kind"]))


def duplicates(dup: dict, dropped: int) -> list[dict]:
    if not dup["count"]:
        return []
    n = dup["count"]
    action = ("they were dropped as asked" if dropped else
              "they are kept, as repeat measurements usually are real data; --drop-duplicates (or asking to remove "
              "duplicates) drops them")
    return [finding("duplicate_rows", None, dup["rows"],
                    f"{n:,} row(s) identical to an earlier row (row {dup['rows'][0]} repeats row {dup['first_of'][0]}; "
                    f"{row_list(dup['rows'], n)}); {action}", n)]


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
                               f"{c['missing_pct']}% missing: values in only {present:,} of {rows:,} rows "
                               f"({row_list(where, present)})", present))
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
        out.append(finding("missing_together", None, rows, f"{n:,} rows miss {', '.join(names)} together "
                           f"({row_list(rows, n)})", n, columns=names))
    return out


def outliers(con, table: str, cols: list[dict], rows: int) -> list[dict]:
    """Values beyond 3 interquartile ranges from the quartiles (on a log scale for values
    spanning orders of magnitude): a robust rule, one pass for all columns."""
    checks = []
    for c in cols:
        q1, q3 = c.get("q25"), c.get("q75")
        if c["role"] != "measure" or q1 is None or q3 is None or c["distinct"] < 8:
            continue
        log = log_range(c)
        x = f"log10({sql_ident(c['name'])})" if log else sql_ident(c["name"])
        if log:
            q1, q3 = math.log10(q1), math.log10(q3)
        iqr = q3 - q1
        if iqr > 0:
            checks.append((c, f"({x} < {q1 - FAR_OUT * iqr!r} OR {x} > {q3 + FAR_OUT * iqr!r})", log))
    if not checks:
        return []
    counts = con.execute("SELECT " + ", ".join(f"count_if({cond})" for _, cond, _ in checks) + f" FROM {table}").fetchone()
    out = []
    for (c, cond, log), n in zip(checks, counts):
        if not n or n > max(MAX_OUTLIERS, OUTLIER_SHARE * (rows - c["missing"])):
            continue  # none, or so many that they are a long tail rather than values apart from the rest
        where, values = con.execute(f"SELECT list(rowid + 1 ORDER BY rowid)[1:{SHOWN}], list({sql_ident(c['name'])} "
                                    f"ORDER BY rowid)[1:5] FROM {table} WHERE {cond}").fetchone()
        shown = ", ".join(f"{v:g} (row {r})" for v, r in zip(values, where))
        out.append(finding("outliers", c["name"], where, f"{n:,} value(s) far from the rest (beyond {FAR_OUT:g} "
                           f"interquartile ranges{' on a log scale' if log else ''}; median {c['median']:g}): {shown}", n))
    return out[:MAX_PER_KIND]


def negatives(con, table: str, cols: list[dict]) -> list[dict]:
    found = [c for c in cols if c.get("negative") and usually_nonnegative(c) and c["role"] in ("measure", "well")]
    out = []
    for c in found[:MAX_PER_KIND] if len(found) <= MANY_COLUMNS else []:
        rows = con.execute(f"SELECT list(rowid + 1 ORDER BY rowid)[1:{SHOWN}] FROM {table} "
                           f"WHERE {sql_ident(c['name'])} < 0").fetchone()[0]
        out.append(finding("negative_values", c["name"], rows, f"{c['negative']:,} negative value(s) (min {c['min']:g}) "
                           f"in a quantity that is usually zero or more ({row_list(rows, c['negative'])})", c["negative"]))
    if len(found) > MANY_COLUMNS:
        total = sum(c["negative"] for c in found)
        out.append(finding("negative_values", None, [], f"{total:,} negative value(s) in {len(found)} columns that are "
                           f"usually zero or more: " + ", ".join(f"{c['name']} (min {c['min']:g})" for c in found[:12]),
                           total, columns=[c["name"] for c in found]))
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
                               columns=[c for c, _ in found]))
            continue
        for col, m in found:
            out.append(finding(kind, col, m["rows"], f"{m['count']:,} reading(s) {what}: "
                               f"{', '.join(repr(v) for v in m['values'])} ({row_list(m['rows'], m['count'])}); "
                               f"missing values now, the marker kept in {flags[col]['flag_column']}", m["count"]))
    return out


def _blank_column(labels: dict[str, dict[str, str]]) -> str | None:
    return next((name for name, by_well in labels.items() if any(BLANK.match(v) for v in by_well.values())), None)


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
    blank_col = _blank_column(labels)
    names = labels.get(blank_col) or next(iter(labels.values()), {})
    blanks = [w for w, v in names.items() if BLANK.match(v) and w in wells]
    samples = [w for w, v in names.items() if not BLANK.match(v) and w in wells]
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
                                       f"mislabelled well?", 1, well=w))
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
                                   f"({what}: {', '.join(f'{v:g}' for v in vals)})", len(members), wells=members))
    return out[:2 * MAX_PER_KIND]


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
                               f"({row_list(rows, n)})", n))
    return out[:MAX_PER_KIND]
