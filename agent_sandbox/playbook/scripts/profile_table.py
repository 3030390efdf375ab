"""Profile a cleaned DuckDB table with out-of-core aggregates.

Per column: type, missing and distinct counts; min/max/mean/std/quartiles for
numbers; first and last date for dates; the most common values for text
(`top_values` keeps a few more of them, for the bar charts).
Above APPROX_ROWS rows, distinct counts and quartiles are approximate (DuckDB's
HyperLogLog and t-digest) so the profile stays one streaming pass.

Self-contained: depends on duckdb only.
"""

from __future__ import annotations

import datetime as dt
import math

APPROX_ROWS = 1_000_000
TOP_VALUES = 5          # listed in the profile
TOP_FETCHED = 10        # fetched once, the plots' bar charts show this many
MAX_TOP_COLUMNS = 40
AGGREGATES_PER_PASS = 200


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def plain(value):
    """A JSON-friendly version of a DuckDB value."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def profile_table(con, table: str, columns: list[dict]) -> dict:
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    approx = rows > APPROX_ROWS
    aggs, slots = [], []
    for c in columns:
        col = sql_ident(c["name"])
        fields = ["missing", "distinct"]
        aggs += [f"count_if({col} IS NULL)",
                 f"approx_count_distinct({col})" if approx else f"count(DISTINCT {col})"]
        if c["type"] in ("integer", "number"):
            q = (f"approx_quantile({col}, [0.25, 0.5, 0.75])" if approx
                 else f"quantile_cont({col}, [0.25, 0.5, 0.75])")
            aggs += [f"min({col})", f"max({col})", f"avg({col})", f"stddev_samp({col})", q]
            fields += ["min", "max", "mean", "std", "quartiles"]
        elif c["type"] in ("date", "datetime"):
            aggs += [f"min({col})", f"max({col})"]
            fields += ["first", "last"]
        slots.append(fields)
    # One pass for a usual table; a few for a wide one, whose hundreds of exact distinct
    # counts and quantiles in one query would exceed DuckDB's memory limit.
    values = []
    for start in range(0, len(aggs), AGGREGATES_PER_PASS):
        values += con.execute(f"SELECT {', '.join(aggs[start:start + AGGREGATES_PER_PASS])} FROM {table}").fetchone()
    out, k = [], 0
    for c, fields in zip(columns, slots):
        entry = dict(c)
        for field in fields:
            entry[field] = values[k]
            k += 1
        quartiles = entry.pop("quartiles", None)
        if quartiles is not None:
            entry["q25"], entry["median"], entry["q75"] = (plain(q) for q in quartiles)
        entry["missing_pct"] = round(100.0 * entry["missing"] / rows, 2) if rows else 0.0
        out.append({key: plain(v) for key, v in entry.items()})
    text_cols = [c for c in out if c["type"] in ("text", "boolean")][:MAX_TOP_COLUMNS]
    top_values = {}
    for c in text_cols:
        col = sql_ident(c["name"])
        top = con.execute(
            f"SELECT {col}, count(*) AS n FROM {table} WHERE {col} IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_FETCHED}").fetchall()
        c["top"] = [{"value": plain(v), "count": n} for v, n in top[:TOP_VALUES]]
        top_values[c["name"]] = top
    return {"rows": rows, "columns": len(columns), "approximate": approx, "column_profiles": out,
            "top_values": top_values}
