"""Plots of a cleaned DuckDB table, drawn from SQL aggregates (never full columns).

One time series when a date column exists, then histograms of numeric
columns, then bar charts of the most common values of text columns, at most
MAX_PLOTS per table so a wide table does not drown the report. All histograms
come from one pass over the table; the bar charts reuse the profile's top values.

Self-contained: depends on duckdb and the sibling charts.py (Pillow).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from charts import histogram_chart, time_series_chart, top_values_chart

MAX_PLOTS = 12
MAX_HISTOGRAMS = 8
BINS = 30
TOP_BARS = 10
MAX_POINTS = 300
# Identifiers are numbers too, but their distribution or mean over time says nothing.
ID_NAME = re.compile(r"(^|_)(id|no|num|number|index|idx|row)$")


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def histograms(con, table: str, columns: list[dict]) -> list[list[int]]:
    """BINS counts per column between its min and max, all columns in one pass."""
    aggs = []
    for c in columns:
        lo, hi = float(c["min"]), float(c["max"])
        x = f"CAST({sql_ident(c['name'])} AS DOUBLE)"
        aggs.append(f"histogram(CASE WHEN isfinite({x}) THEN least(CAST(floor(({x} - {lo!r}) / {(hi - lo) / BINS!r}) "
                    f"AS INTEGER), {BINS - 1}) END)")
    row = con.execute(f"SELECT {', '.join(aggs)} FROM {table}").fetchone()
    out = []
    for found in row:
        counts = [0] * BINS
        for b, n in (found or {}).items():
            counts[max(0, min(BINS - 1, b))] += n
        out.append(counts)
    return out


def _time_unit(first, last) -> str:
    span = (last - first).total_seconds() if isinstance(first, dt.datetime) else (last - first).days * 86400
    for unit, seconds in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400),
                          ("week", 7 * 86400), ("month", 30 * 86400)):
        if span / seconds <= MAX_POINTS:
            return unit
    return "year"


def plot_table(con, table: str, profile: dict, plots_dir: Path, prefix: str) -> list[dict]:
    """Draw the plots; returns [{path, kind, column, title}] with paths relative to plots_dir's parent."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    cols = profile["column_profiles"]
    rows = profile["rows"]
    top_values = profile.get("top_values", {})
    made: list[dict] = []

    def path(kind: str, column: str, title: str) -> Path:
        name = f"{prefix}_{kind}_{column}.png"
        made.append({"path": f"{plots_dir.name}/{name}", "kind": kind, "column": column, "title": title})
        return plots_dir / name

    numeric = [c for c in cols if c["type"] in ("integer", "number") and c.get("min") is not None
               and not ID_NAME.search(c["name"])]
    dates = [c for c in cols if c["type"] in ("date", "datetime") and c.get("first") and c.get("first") != c.get("last")]
    if dates:
        d = dates[0]
        first, last = con.execute(f"SELECT min({sql_ident(d['name'])}), max({sql_ident(d['name'])}) FROM {table}").fetchone()
        unit = _time_unit(first, last)
        series = numeric[:3]
        aggs = ", ".join(f"avg({sql_ident(c['name'])})" for c in series) or "count(*)"
        data = con.execute(
            f"SELECT date_trunc('{unit}', {sql_ident(d['name'])}) AS t, {aggs} FROM {table} "
            f"WHERE {sql_ident(d['name'])} IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()
        # one panel per measurement: their scales differ, one shared axis would flatten them
        labels = [f"mean {c['name']}" for c in series] or ["rows"]
        title = f"{'Means' if series else 'Rows'} per {unit} of {d['name']}"
        time_series_chart(path("timeseries", d["name"], title), title, d["name"], unit, [r[0] for r in data],
                          [(label, [r[k + 1] for r in data]) for k, label in enumerate(labels)])

    spread = [c for c in numeric[:MAX_HISTOGRAMS] if float(c["min"]) != float(c["max"])]
    spread = spread[:max(0, MAX_PLOTS - len(made))]
    for c, counts in zip(spread, histograms(con, table, spread) if spread else []):
        lo, hi = float(c["min"]), float(c["max"])
        title = f"Distribution of {c['name']}"
        histogram_chart(path("hist", c["name"], title), title, c["name"], lo, (hi - lo) / BINS, counts)

    for c in cols:
        if len(made) >= MAX_PLOTS:
            break
        top = top_values.get(c["name"], [])[:TOP_BARS]
        if c["type"] not in ("text", "boolean") or not top or c.get("distinct", 0) < 2:
            continue
        if c.get("distinct", 0) >= 0.9 * rows:  # identifiers: one bar per row says nothing
            continue
        title = f"Most common values of {c['name']}"
        top_values_chart(path("top", c["name"], title), title, [str(v)[:40] for v, _ in top], [n for _, n in top])
    return made
