"""Profile a cleaned DuckDB table with out-of-core aggregates.

Per column: type, unit, role (roles.py), missing and distinct counts;
min/max/mean/std/quartiles and the count of negative values for numbers; first
and last date for dates; the most common values for text (`top_values` keeps a
few more of them, for the plots). Every row is used, never a sample, and every
figure is exact except, above APPROX_ROWS rows, the distinct counts (DuckDB's
HyperLogLog over every row: an exact count of distinct values of a wide table
would cost more than the rest of the profile).

Self-contained: depends on duckdb and the sibling common.py, roles.py.
"""

from __future__ import annotations

from common import plain, sql_ident
from roles import assign_roles, identifier

APPROX_ROWS = 1_000_000
TOP_VALUES = 5          # listed in the profile
TOP_FETCHED = 20        # fetched once, for the plots' counts
MAX_TOP_COLUMNS = 40
AGGREGATES_PER_PASS = 200


def profile_table(con, table: str, columns: list[dict], plate_table: bool = False) -> dict:
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    approx = rows > APPROX_ROWS
    aggs, slots = [], []
    for c in columns:
        col = sql_ident(c["name"])
        fields = ["missing", "distinct"]
        aggs += [f"count_if({col} IS NULL)",
                 f"approx_count_distinct({col})" if approx else f"count(DISTINCT {col})"]
        if c["type"] in ("integer", "number") and identifier(c["name"], c["type"]):
            aggs += [f"min({col})", f"max({col})"]  # an identifier's quartiles mean nothing and cost a sort
            fields += ["min", "max"]
        elif c["type"] in ("integer", "number"):
            q = f"quantile_cont({col}, [0.25, 0.5, 0.75])"  # exact, and cheaper than a t-digest here
            aggs += [f"min({col})", f"max({col})", f"avg({col})", f"stddev_samp({col})", q, f"count_if({col} < 0)"]
            fields += ["min", "max", "mean", "std", "quartiles", "negative"]
        elif c["type"] in ("date", "datetime", "time"):
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
    assign_roles(out, rows, plate_table)
    text_cols = [c for c in out if c["type"] in ("text", "boolean") and c["role"] not in ("id", "constant")
                 ][:MAX_TOP_COLUMNS]
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
