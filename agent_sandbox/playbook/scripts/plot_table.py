"""Plots of a cleaned DuckDB table, drawn from SQL aggregates (never full columns).

One time series when a date column exists, then histograms of numeric
columns, then bar charts of the most common values of text columns, at most
MAX_PLOTS per table so a wide table does not drown the report.

Self-contained: depends on duckdb and matplotlib only.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

MAX_PLOTS = 12
MAX_HISTOGRAMS = 8
BINS = 30
TOP_BARS = 10
MAX_POINTS = 300
DPI = 80
# Identifiers are numbers too, but their distribution or mean over time says nothing.
ID_NAME = re.compile(r"(^|_)(id|no|num|number|index|idx|row)$")


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def new_figure(width: float, height: float, rows: int = 1):
    """A bare Figure: pyplot's import and tight_layout would cost more than drawing the plots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig, [a[0] for a in axes]


def histogram(con, table: str, col: str, lo: float, hi: float) -> tuple[list[float], list[int], float]:
    width = (hi - lo) / BINS
    c = sql_ident(col)
    rows = con.execute(
        f"SELECT least(CAST(floor(({c} - {lo!r}) / {width!r}) AS INTEGER), {BINS - 1}) AS b, count(*) "
        f"FROM {table} WHERE {c} IS NOT NULL AND NOT isnan({c}) GROUP BY 1 ORDER BY 1").fetchall()
    counts = [0] * BINS
    for b, n in rows:
        counts[max(0, min(BINS - 1, b))] += n
    return [lo + i * width for i in range(BINS)], counts, width


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
    made: list[dict] = []

    def save(fig, kind: str, column: str, title: str, left: float = 0.14, bottom: float = 0.17) -> None:
        name = f"{prefix}_{kind}_{column}.png"
        fig.subplots_adjust(left=left, bottom=bottom, right=0.97, top=1 - 0.35 / fig.get_figheight())
        fig.savefig(plots_dir / name, dpi=DPI, pil_kwargs={"compress_level": 3})
        made.append({"path": f"{plots_dir.name}/{name}", "kind": kind, "column": column, "title": title})

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
        fig, axes = new_figure(7, 1.2 + 1.6 * len(labels), len(labels))
        for k, label in enumerate(labels):
            ax = axes[k]
            ax.plot([r[0] for r in data], [r[k + 1] for r in data], marker="." if len(data) < 60 else None)
            ax.set_ylabel(label, fontsize=8)
        title = f"{'Means' if series else 'Rows'} per {unit} of {d['name']}"
        axes[0].set_title(title)
        axes[-1].set_xlabel(d["name"])
        fig.autofmt_xdate()
        save(fig, "timeseries", d["name"], title, left=0.12, bottom=0.9 / fig.get_figheight())

    for c in numeric[:MAX_HISTOGRAMS]:
        if len(made) >= MAX_PLOTS:
            break
        lo, hi = float(c["min"]), float(c["max"])
        if lo == hi:
            continue
        edges, counts, width = histogram(con, table, c["name"], lo, hi)
        fig, (ax,) = new_figure(5, 3.2)
        ax.bar(edges, counts, width=width, align="edge", edgecolor="white")
        ax.set_title(f"Distribution of {c['name']}")
        ax.set_xlabel(c["name"])
        ax.set_ylabel("rows")
        save(fig, "hist", c["name"], f"Distribution of {c['name']}")

    for c in cols:
        if len(made) >= MAX_PLOTS:
            break
        if c["type"] not in ("text", "boolean") or not c.get("top") or c.get("distinct", 0) < 2:
            continue
        if c.get("distinct", 0) >= 0.9 * rows:  # identifiers: one bar per row says nothing
            continue
        col = sql_ident(c["name"])
        top = con.execute(f"SELECT {col}, count(*) AS n FROM {table} WHERE {col} IS NOT NULL "
                          f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_BARS}").fetchall()
        labels = [str(v)[:40] for v, _ in top][::-1]
        # room on the left for the longest label: about 0.075 inch per character at this size
        label_inches = 0.3 + 0.075 * max(len(label) for label in labels)
        width, height = 3.5 + label_inches, 1.0 + 0.3 * len(top)
        fig, (ax,) = new_figure(width, height)
        ax.barh(labels, [n for _, n in top][::-1])
        fig.suptitle(f"Most common values of {c['name']}", fontsize=11)
        ax.set_xlabel("rows")
        save(fig, "top", c["name"], f"Most common values of {c['name']}", left=label_inches / width,
             bottom=0.55 / height)
    return made
