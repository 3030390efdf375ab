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


WIDE_COLUMNS = 20        # this many measurements of one type, in a table of at most
WIDE_ROWS = 100_000      # this many rows, are profiled together, as one long column grouped by name
MEASURE_FIELDS = ["missing", "distinct", "min", "max", "mean", "std", "quartiles", "negative"]


def measure_columns(con, table: str, columns: list[dict], rows: int) -> dict[str, list]:
    """{name: its MEASURE_FIELDS} for a wide table's measurements (a plate read: 96 well columns),
    with one grouped query per SQL type: hundreds of aggregates in one query cost far more to plan
    and run than the values they read. Empty for a narrow or a long table."""
    measures = [c["name"] for c in columns if c["type"] in ("integer", "number") and not identifier(c["name"], c["type"])]
    if len(measures) < WIDE_COLUMNS or rows > WIDE_ROWS:
        return {}
    rel = con.sql(f"SELECT {', '.join(sql_ident(m) for m in measures)} FROM {table} LIMIT 0")
    by_type: dict[str, list[str]] = {}
    for name, type_ in zip(measures, rel.types):
        by_type.setdefault(str(type_), []).append(name)
    found = {}
    for names in by_type.values():
        cols = ", ".join(sql_ident(n) for n in names)
        for name, *values in con.execute(
                "SELECT name, count(v), count(DISTINCT v), min(v), max(v), avg(v), stddev_samp(v), "
                "quantile_cont(v, [0.25, 0.5, 0.75]), count_if(v < 0) "
                f"FROM (UNPIVOT (SELECT {cols} FROM {table}) ON {cols} INTO NAME name VALUE v) GROUP BY name").fetchall():
            found[name] = [rows - values[0]] + values[1:]
    for name in measures:  # a column with no value at all has no row in the long form
        found.setdefault(name, [rows, 0, None, None, None, None, None, 0])
    return found


def profile_table(con, table: str, columns: list[dict], plate_table: bool = False) -> dict:
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    approx = rows > APPROX_ROWS
    wide = measure_columns(con, table, columns, rows)
    aggs, slots = [], []
    for c in columns:
        if c["name"] in wide:
            slots.append(MEASURE_FIELDS)
            continue
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
    values: list = []
    for start in range(0, len(aggs), AGGREGATES_PER_PASS):
        values += con.execute(f"SELECT {', '.join(aggs[start:start + AGGREGATES_PER_PASS])} FROM {table}").fetchone()
    out, k = [], 0
    for c, fields in zip(columns, slots):
        entry = dict(c)
        if c["name"] in wide:
            entry.update(zip(fields, wide[c["name"]]))
            fields = []
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
