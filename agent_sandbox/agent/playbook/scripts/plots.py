"""The plots a table's script draws (scripts/plot_<table>.py calls these), with matplotlib.

Each function reads what it draws from a DuckDB table (aggregates over every
row, or the rows themselves when there are few enough to draw), saves one PNG
and returns True; a plot that cannot be drawn prints one line and returns
False, so the others still are. Edit freely: they are plain matplotlib.
matplotlib is imported once, when this module is.

Self-contained: depends on duckdb, matplotlib and the sibling common.py.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from common import sql_ident as q  # noqa: E402
from common import sql_str
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

RAW_ROWS = 20000        # up to this many rows are drawn point by point; above, from binned aggregates
MAX_POINTS = 600        # time points in a time series before it is averaged per interval
GAP_FACTOR = 10         # a step in time this many times the usual one breaks the line
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]


def open_table(parquet: Path, table: str = "clean"):
    """A DuckDB connection with the cleaned table as a view named `table`."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_str(str(parquet))})")
    for name in ("growth_parameters", "growth_curves"):  # written by the growth analysis of a kinetic read
        path = Path(parquet).parent / f"{name}.csv"
        if path.is_file():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv_auto({sql_str(str(path))}, header=true)")
    return con


def plot(func):
    """Save the figure the function draws; on failure print one line and go on."""
    @functools.wraps(func)
    def wrapper(con, table, path, *args, **kwargs):
        try:
            fig = func(con, table, *args, **kwargs)
            if fig is None:
                return False
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
            return True
        except Exception as exc:  # one plot failing must not stop the others
            print(f"plot {Path(path).name} not drawn: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return False
    return wrapper


def label(column: str, units: dict | None) -> str:
    unit = (units or {}).get(column)
    return f"{column} ({unit})" if unit and not column.endswith("_" + unit.lower()) else column


def margins(fig, left: float = 0.8, bottom: float = 0.6, top: float = 0.45, right: float = 0.25,
            wspace: float = 0.35, hspace: float = 0.45) -> None:
    """Fixed margins in inches: a layout engine would cost more than drawing the plot."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=min(0.45, left / w), right=1 - right / w, bottom=min(0.45, bottom / h),
                        top=1 - top / h, wspace=wspace, hspace=hspace)


def single(width: float = 6.0, height: float = 3.8, **margin):
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    margins(fig, **margin)
    return fig, ax


def panels(n: int, width: float = 3.4, height: float = 2.8, max_cols: int = 4, sharex: bool = False, **margin):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(max(5.0, width * cols), height * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=sharex).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    margins(fig, **margin)
    return fig, axes[:n]


def finite_range(con, table, column: str, log: bool) -> tuple[float, float] | None:
    x = f"log10({q(column)})" if log else f"CAST({q(column)} AS DOUBLE)"
    where = f"WHERE {q(column)} > 0" if log else ""
    lo, hi = con.execute(f"SELECT min({x}), max({x}) FROM {table} {where}").fetchone()
    return None if lo is None else (lo, hi)


@plot
def histogram(con, table, column: str, title: str, log: bool = False, units: dict | None = None, bins: int = 30):
    """Counts of a numeric column in equal bins (equal on a log scale when `log`), every row."""
    span = finite_range(con, table, column, log)
    if span is None:
        return None
    lo, hi = span
    width = (hi - lo) / bins or 1.0
    x = f"log10({q(column)})" if log else f"CAST({q(column)} AS DOUBLE)"
    found = con.execute(f"SELECT least(CAST(floor(({x} - {lo!r}) / {width!r}) AS INTEGER), {bins - 1}) AS b, count(*) "
                        f"FROM {table} WHERE isfinite({x}) GROUP BY 1").fetchall()
    counts = [0] * bins
    for b, n in found:
        counts[max(0, min(bins - 1, b))] += n
    edges = [lo + k * width for k in range(bins + 1)]
    if log:
        edges = [10 ** e for e in edges]
    fig, ax = single()
    ax.stairs(counts, edges, fill=True, color=COLORS[0], alpha=0.85)
    if log:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=label(column, units) + (" (log scale)" if log else ""), ylabel="rows")
    return fig


@plot
def counts(con, table, column: str, title: str, top: int = 20):
    """Rows per value, most common first: for categories and 0/1 columns."""
    found = con.execute(f"SELECT CAST({q(column)} AS VARCHAR), count(*) AS n FROM {table} WHERE {q(column)} IS NOT NULL "
                        f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {top}").fetchall()
    if not found:
        return None
    names = [str(v)[:40] for v, _ in found][::-1]
    fig, ax = single(6, 0.9 + 0.32 * len(found), left=0.3 + 0.075 * max(len(n) for n in names))
    ax.barh(names, [n for _, n in found][::-1], color=COLORS[0])
    ax.set(title=title, xlabel="rows")
    return fig


@plot
def box_by_group(con, table, group: str, columns: list[str], title: str, log_scale: list[str] = (),
                 units: dict | None = None, strip: bool | None = None):
    """Each measurement's distribution per level of `group`: box plots, or every point (a strip)
    when the groups are small (`strip`; by default when no group has more than 30 rows)."""
    sizes = con.execute(f"SELECT {q(group)}, count(*) FROM {table} WHERE {q(group)} IS NOT NULL GROUP BY 1 "
                        f"ORDER BY 1 LIMIT 20").fetchall()
    levels, largest, total = [g for g, _ in sizes], max((n for _, n in sizes), default=0), sum(n for _, n in sizes)
    strip = largest <= 30 if strip is None else strip
    longest = max((len(str(v)[:14]) for v in levels), default=1)
    turn = len(levels) * longest > 24  # labels that would overlap are turned
    fig, axes = panels(len(columns), bottom=0.5 + (0.06 * longest if turn else 0.1), hspace=0.35 + 0.1 * longest * turn)
    if total <= RAW_ROWS:
        rows = con.execute(f"SELECT {q(group)}, {', '.join(q(c) for c in columns)} FROM {table} "
                           f"WHERE {q(group)} IS NOT NULL").fetchall()
    else:
        stats = _box_stats(con, table, group, columns, levels)
    for k, (ax, col) in enumerate(zip(axes, columns)):
        if total <= RAW_ROWS:
            data = [[r[k + 1] for r in rows if r[0] == level and r[k + 1] is not None] for level in levels]
            if strip:  # every point says more than a box of five
                for j, values in enumerate(data):
                    jitter = [j + 1 + 0.25 * math.sin(7.3 * i) for i in range(len(values))]
                    ax.scatter(jitter, values, s=14, alpha=0.7, color=COLORS[j % len(COLORS)])
            else:
                ax.boxplot(data, showfliers=True, flierprops={"markersize": 3})
        else:
            ax.bxp(stats[col], showfliers=False)
        ax.set_xticks(range(1, len(levels) + 1), [str(v)[:14] for v in levels], rotation=30 if turn else 0,
                      ha="right" if turn else "center")
        if col in log_scale:
            ax.set_yscale("log")
        ax.set(ylabel=label(col, units))
    fig.suptitle(title)
    return fig


def _box_stats(con, table, group: str, columns: list[str], levels: list, bins: int = 1000) -> dict[str, list[dict]]:
    """Quartiles and Tukey whiskers per group and column for a big table, from counts of every
    row in 1,000 bins per column: exact to a 1,000th of the range (below a pixel), found in SQL
    from cumulative counts, with no sort of the rows."""
    spans = con.execute("SELECT " + ", ".join(f"min({q(c)}), max({q(c)})" for c in columns) + f" FROM {table}").fetchone()
    out = {}
    for k, c in enumerate(columns):
        lo, hi = spans[2 * k], spans[2 * k + 1]
        if lo is None:
            out[c] = []
            continue
        width = (hi - lo) / bins or 1.0
        x = f"({lo!r} + (b + 0.5) * {width!r})"
        found = {r[0]: r[1:] for r in con.execute(f"""
            WITH counted AS (
                SELECT {q(group)} AS g, least(CAST(floor(({q(c)} - {lo!r}) / {width!r}) AS INTEGER), {bins - 1}) AS b,
                       count(*) AS n
                FROM {table} WHERE {q(c)} IS NOT NULL AND {q(group)} IS NOT NULL GROUP BY 1, 2),
            cumulative AS (
                SELECT g, b, sum(n) OVER (PARTITION BY g ORDER BY b) AS upto, sum(n) OVER (PARTITION BY g) AS total
                FROM counted),
            quartiles AS (
                SELECT g, min({x}) FILTER (WHERE upto > 0.25 * (total - 1)) AS q1,
                       min({x}) FILTER (WHERE upto > 0.5 * (total - 1)) AS med,
                       min({x}) FILTER (WHERE upto > 0.75 * (total - 1)) AS q3
                FROM cumulative GROUP BY g)
            SELECT g, any_value(q1), any_value(med), any_value(q3),
                   min({x}) FILTER (WHERE {x} >= q1 - 1.5 * (q3 - q1)), max({x}) FILTER (WHERE {x} <= q3 + 1.5 * (q3 - q1))
            FROM cumulative JOIN quartiles USING (g) GROUP BY g""").fetchall()}
        out[c] = [{"q1": found[v][0], "med": found[v][1], "q3": found[v][2], "whislo": found[v][3],
                   "whishi": found[v][4], "label": str(v)} for v in levels if v in found]
    return out


def _lit(value) -> str:
    return sql_str(value) if isinstance(value, str) else repr(value)


@plot
def scatter_vs_outcome(con, table, outcome: str, inputs: list[str], title: str, log_scale: list[str] = (),
                       units: dict | None = None):
    """Each input against the outcome: points, or a 2-D histogram of every row for big tables."""
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    fig, axes = panels(len(inputs))
    for ax, col in zip(axes, inputs):
        if rows <= RAW_ROWS:
            pts = con.execute(f"SELECT {q(col)}, {q(outcome)} FROM {table} WHERE {q(col)} IS NOT NULL "
                              f"AND {q(outcome)} IS NOT NULL").fetchall()
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, alpha=0.6, color=COLORS[0])
        else:
            _density(ax, con, table, col, outcome)
        if col in log_scale:
            ax.set_xscale("log")
        if outcome in log_scale:
            ax.set_yscale("log")
        ax.set(xlabel=label(col, units), ylabel=label(outcome, units))
    fig.suptitle(title)
    return fig


def _density(ax, con, table, x: str, y: str, bins: int = 60) -> None:
    (x0, x1), (y0, y1) = finite_range(con, table, x, False), finite_range(con, table, y, False)
    wx, wy = (x1 - x0) / bins or 1.0, (y1 - y0) / bins or 1.0
    grid = [[0] * bins for _ in range(bins)]
    for i, j, n in con.execute(
            f"SELECT least(CAST(floor(({q(x)} - {x0!r}) / {wx!r}) AS INTEGER), {bins - 1}), "
            f"least(CAST(floor(({q(y)} - {y0!r}) / {wy!r}) AS INTEGER), {bins - 1}), count(*) FROM {table} "
            f"WHERE {q(x)} IS NOT NULL AND {q(y)} IS NOT NULL GROUP BY 1, 2").fetchall():
        grid[j][i] = n
    masked = [[math.nan if n == 0 else n for n in row] for row in grid]
    ax.imshow(masked, origin="lower", aspect="auto", extent=(x0, x1, y0, y1), cmap="viridis")


@plot
def correlation_heatmap(con, table, columns: list[str], title: str):
    """Pearson correlation of every pair of numeric columns, every row."""
    n = len(columns)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    values = []
    for start in range(0, len(pairs), 400):
        chunk = pairs[start:start + 400]
        values += con.execute("SELECT " + ", ".join(f"corr({q(columns[i])}, {q(columns[j])})" for i, j in chunk)
                              + f" FROM {table}").fetchone()
    matrix = [[1.0 if i == j else math.nan for j in range(n)] for i in range(n)]
    for (i, j), v in zip(pairs, values):
        matrix[i][j] = matrix[j][i] = math.nan if v is None else v
    size = min(16.0, 3 + 0.32 * n)
    room = 0.4 + 0.065 * max(len(c) for c in columns) * min(1.0, (10 - n // 8) / 10)
    fig, ax = single(size + 1.2 + room, size + room, left=room, bottom=room, right=1.3)
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n), columns, rotation=90, fontsize=max(5, 10 - n // 8))
    ax.set_yticks(range(n), columns, fontsize=max(5, 10 - n // 8))
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if not math.isnan(matrix[i][j]):
                    ax.text(j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
    ax.set_title(title)
    return fig


INTERVALS = [("minute", 60, "per-minute"), ("hour", 3600, "hourly"), ("day", 86400, "daily"),
             ("week", 604800, "weekly"), ("month", 2629800, "monthly"), ("year", 31557600, "yearly")]


def _bins(con, table, time: str, numeric_time: bool, unit: str | None) -> tuple[str, str, str]:
    """(SQL key of a row's interval, SQL x of an interval, words) to average a long series over intervals.

    Intervals start at the first time point and are whole days, weeks, ... (or equal numeric steps);
    a last interval shorter than half of one joins the one before, so no edge point stands alone
    (a lone last sample used to draw a false drop at the end of long series)."""
    t = q(time)
    lo, hi = con.execute(f"SELECT min({t}), max({t}) FROM {table}").fetchone()
    if numeric_time:
        step = (hi - lo) / MAX_POINTS or 1
        count = MAX_POINTS
        key = f"least(floor(({t} - {lo!r}) / {step!r}), {count - 1})"
        return key, f"avg({t})", f"mean per {step:.3g}{' ' + unit if unit else ''} interval"
    span = (hi - lo).total_seconds() if hasattr(hi - lo, "total_seconds") else (hi - lo).days * 86400
    name, size, words = next((i for i in INTERVALS if span / i[1] <= MAX_POINTS), INTERVALS[-1])
    count = max(1, round(span / size))
    e = f"epoch(CAST({t} AS TIMESTAMP))"
    first = f"epoch(CAST({sql_str(str(lo))} AS TIMESTAMP))"
    key = f"least(floor(({e} - {first}) / {size}), {count - 1})"
    return key, f"make_timestamp(CAST(avg(epoch_us(CAST({t} AS TIMESTAMP))) AS BIGINT))", f"{words} mean"


def _series(con, table, time: str, columns: list[str], numeric_time: bool, group: str | None = None,
            unit: str | None = None):
    """({group: [(x, mean, min, max) per column]}, words): the values over time, per group; the
    mean (with min and max) per time point when several rows share one, per interval when there
    are too many time points to draw; `words` says which ("" for the values themselves)."""
    t = q(time)
    distinct, rows = con.execute(f"SELECT approx_count_distinct({t}), count({t}) FROM {table}").fetchone()
    g = q(group) if group else "NULL"
    if distinct > MAX_POINTS:
        key, x, words = _bins(con, table, time, numeric_time, unit)
    else:
        key, x = t, t
        repeated = con.execute(f"SELECT max(n) FROM (SELECT count(*) AS n FROM {table} WHERE {t} IS NOT NULL "
                               f"GROUP BY {t}, {g})").fetchone()[0] or 1
        words = f"mean per {time}" if repeated > 1 else ""
    aggs = ", ".join(f"avg({q(c)}), min({q(c)}), max({q(c)})" for c in columns)
    found = con.execute(f"SELECT {g} AS g, {key} AS k, {x} AS x, {aggs} FROM {table} WHERE {t} IS NOT NULL "
                        + (f"AND {g} IS NOT NULL " if group else "") + "GROUP BY 1, 2 ORDER BY 1, 3").fetchall()
    out: dict = {}
    for r in found:
        out.setdefault(r[0], []).append(r[2:])
    return out, words


def _break_gaps(times: list, values: list) -> tuple[list, list]:
    """Insert a gap where time jumps far beyond its usual step, so no line crosses it."""
    if len(times) < 3:
        return times, values
    steps = sorted(b - a for a, b in zip(times, times[1:]))
    usual = steps[len(steps) // 2]
    if not usual:
        return times, values
    xs, ys = [times[0]], [values[0]]
    for a, b, v in zip(times, times[1:], values[1:]):
        if (b - a) > usual * GAP_FACTOR:
            xs.append(a + (b - a) / 2)
            ys.append(math.nan)
        xs.append(b)
        ys.append(v)
    return xs, ys


@plot
def timeseries(con, table, time: str, columns: list[str], title: str, log_scale: list[str] = (),
               units: dict | None = None, group: str | None = None):
    """Each measurement over time, one panel each, one line per level of `group` (groups are never
    averaged together). Where several rows share a time point, or there are too many points to
    draw, the line is their mean over a band from min to max, and the axis and title say so.
    Long gaps are not bridged."""
    numeric_time = con.execute(f"SELECT typeof({q(time)}) FROM {table} LIMIT 1").fetchone()[0] in (
        "DOUBLE", "BIGINT", "INTEGER", "FLOAT", "DECIMAL")
    fig, axes = panels(len(columns), width=7.0, height=1.9 if not group else 2.3, max_cols=1, sharex=True, left=1.0,
                       hspace=0.25, right=1.6 if group else 0.25)
    series, words = _series(con, table, time, columns, numeric_time, group, (units or {}).get(time))
    for k, (ax, col) in enumerate(zip(axes, columns)):
        for n, (level, points) in enumerate(series.items()):
            data = [(r[0], r[1 + 3 * k], r[2 + 3 * k], r[3 + 3 * k]) for r in points if r[1 + 3 * k] is not None]
            if not data:
                continue
            colour = COLORS[n % len(COLORS)]
            xs, ys = _break_gaps([d[0] for d in data], [d[1] for d in data])
            ax.plot(xs, ys, marker="o" if len(data) <= 60 else None, markersize=3, linewidth=1.2, color=colour,
                    label=str(level) if group else None)
            if words:
                bx, lows = _break_gaps([d[0] for d in data], [d[2] for d in data])
                _, highs = _break_gaps([d[0] for d in data], [d[3] for d in data])
                ax.fill_between(bx, lows, highs, color=colour, alpha=0.15, linewidth=0)
        if col in log_scale:
            ax.set_yscale("log")
        ax.set_ylabel((f"{words} of\n" if words else "") + label(col, units), fontsize=8)
        if group and k == 0:
            ax.legend(title=group, fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if not numeric_time:
        locator = AutoDateLocator()
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    elif all(isinstance(r[0], int) for points in series.values() for r in points):  # years, cycles: whole ticks
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[-1].ticklabel_format(axis="x", useOffset=False, style="plain")
    axes[-1].set_xlabel(label(time, units))
    fig.suptitle(title + (f" ({words}; band: min to max)" if words else ""))
    return fig


def _wells_over_time(con, table, time: str, wells: list[str]):
    rows = con.execute(f"SELECT {q(time)}, {', '.join(q(w) for w in wells)} FROM {table} "
                       f"WHERE {q(time)} IS NOT NULL ORDER BY 1").fetchall()
    times = [r[0] for r in rows]
    return times, {w: [r[k + 1] for r in rows] for k, w in enumerate(wells)}


def _well(text) -> str | None:
    """'A01', ' a1' -> 'A1'; None for anything that is not a well."""
    import re
    match = re.match(r"^\s*([A-Za-z]{1,2})0*([1-9][0-9]?)\s*$", str(text or ""))
    return f"{match.group(1).upper()}{match.group(2)}" if match else None


def _plate_row(well: str) -> str:
    return well.rstrip("0123456789").upper()


@plot
def growth_curves(con, table, time: str, wells: list[str], title: str, log: bool = False, by_row: bool = False,
                  units: dict | None = None):
    """Every well's reading over time: all overlaid (coloured by plate row) or one panel per plate row."""
    times, series = _wells_over_time(con, table, time, wells)
    rows = sorted({_plate_row(w) for w in wells}, key=lambda r: (len(r), r))
    if by_row:
        fig, axes = panels(len(rows), width=3.0, height=2.2, sharex=True, hspace=0.4)
        for ax, row in zip(axes, rows):
            for k, w in enumerate(w for w in wells if _plate_row(w) == row):
                ax.plot(times, _positive(series[w]) if log else series[w], linewidth=0.9, color=COLORS[k % len(COLORS)],
                        label=w.upper())
            ax.set_title(f"row {row}", fontsize=9)
            if len(wells) <= 96:
                ax.legend(fontsize=5, ncol=3)
            if log:
                ax.set_yscale("log")
    else:
        fig, ax = single(7.5, 4.5, right=1.2)
        for w in wells:
            ax.plot(times, _positive(series[w]) if log else series[w], linewidth=0.8, alpha=0.8,
                    color=COLORS[rows.index(_plate_row(w)) % len(COLORS)])
        for k, row in enumerate(rows):
            ax.plot([], [], color=COLORS[k % len(COLORS)], label=f"row {row}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if log:
            ax.set_yscale("log")
        ax.set(xlabel=label(time, units), ylabel="reading" + (" (log scale)" if log else ""))
    fig.suptitle(title)
    return fig


def _positive(values: list) -> list:
    return [v if v is not None and v > 0 else math.nan for v in values]


def _text_colour(rgba) -> str:
    """Black or white, whichever contrasts more with the cell (WCAG relative luminance): at least
    4.5:1 on any colour, so every value is readable (white on yellow was not)."""
    def channel(x: float) -> float:
        return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4
    lum = sum(w * channel(x) for w, x in zip((0.2126, 0.7152, 0.0722), rgba[:3]))
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def _plate_axes(wells, cell: float = 0.45, right: float = 1.6):
    letters = sorted({_plate_row(w) for w in wells}, key=lambda r: (len(r), r))
    numbers = sorted({int(w[len(_plate_row(w)):]) for w in wells})
    cell = cell if len(numbers) <= 12 else 0.3
    fig, ax = single(2.1 + cell * len(numbers), 1.5 + cell * len(letters), left=0.45, bottom=0.55, top=0.85,
                     right=right)
    return fig, ax, letters, numbers


def draw_plate(cells: dict, title: str, colour_label: str, flags: dict | None = None, notes: dict | None = None,
               blanks=(), fmt: str = "{:.3g}", cmap: str = "viridis", footnote: str = ""):
    """A plate as a grid of wells coloured by value. Wells with a range marker (`flags`: OVER) are
    hatched and labelled with it; wells without a value may say why (`notes`: blank, no growth);
    `blanks` get a dashed outline; every value is written in a colour readable on its cell."""
    from matplotlib.patches import Rectangle

    flags, notes = flags or {}, notes or {}
    fig, ax, letters, numbers = _plate_axes(list(cells) + list(flags) + list(notes))
    grid = [[cells.get(f"{r}{c}") for c in numbers] for r in letters]
    masked = [[math.nan if v is None else v for v in row] for row in grid]
    image = ax.imshow(masked, cmap=cmap, aspect="auto")
    ax.set_facecolor("#f2f2f2")
    ax.set_xticks(range(len(numbers)), numbers, fontsize=7)
    ax.set_yticks(range(len(letters)), letters, fontsize=7)
    ax.xaxis.tick_top()
    write = len(letters) * len(numbers) <= 96
    for i, r in enumerate(letters):
        for j, c in enumerate(numbers):
            well, v = f"{r}{c}", grid[i][j]
            if well in flags:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#d9d9d9", edgecolor="#333333",
                                       hatch="////", linewidth=0.6))
                ax.text(j, i, str(flags[well])[:6], ha="center", va="center", fontsize=5.5, color="black",
                        fontweight="bold", bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "linewidth": 0})
            elif v is not None and write:
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                        color=_text_colour(image.cmap(image.norm(v))))
            elif v is None and well in notes and write:
                ax.text(j, i, notes[well], ha="center", va="center", fontsize=5, color="#444444")
            if well in blanks:  # outlined in the colour that stands out on the cell
                edge = _text_colour(image.cmap(image.norm(v))) if v is not None else "black"
                ax.add_patch(Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False, edgecolor=edge,
                                       linestyle=(0, (2, 1.5)), linewidth=0.9))
    fig.colorbar(image, ax=ax, shrink=0.9, label=colour_label)
    ax.set_title(title, fontsize=10, pad=18)
    if footnote:
        import textwrap
        width = int(fig.get_size_inches()[0] * 15)
        fig.text(0.01, 0.01, textwrap.fill(footnote, width), fontsize=7, color="#444444", va="bottom")
    return fig


@plot
def plate_heatmap(con, table, value: str, title: str, wells: list[str] | None = None, time: str | None = None,
                  units: dict | None = None, blanks: list[str] = (), blank_rule: str = ""):
    """The plate as a grid of wells coloured by `value` (a table of wells; its `<value>_flag`
    markers such as OVER hatched and labelled), or by the last reading of each well column
    (`wells`, ordered by `time`). `blanks` are outlined."""
    flags: dict = {}
    if wells:
        last = con.execute(f"SELECT {', '.join(q(w) for w in wells)} FROM {table} ORDER BY {q(time)} DESC NULLS LAST "
                           f"LIMIT 1").fetchone()
        cells = {w.upper(): v for w, v in zip(wells, last)}
    else:
        first_plate = f" WHERE plate = (SELECT min(plate) FROM {table})" if _has(con, table, "plate") else ""
        flag = f"{value}_flag" if _has(con, table, f"{value}_flag") else "NULL"
        found = con.execute(f"SELECT well, {q(value)}, {q(flag) if flag != 'NULL' else flag} FROM {table}{first_plate}"
                            ).fetchall()
        found = [(_well(w), v, f) for w, v, f in found if _well(w)]
        cells = {w: v for w, v, _ in found}
        flags = {w: f for w, _, f in found if f}
    footnote = []
    if flags:
        footnote.append(f"hatched: {len(flags)} well(s) out of the reader's range ({', '.join(sorted(set(flags.values())))})")
    if blanks:
        footnote.append("dashed outline: blanks" + (f" ({blank_rule})" if blank_rule else ""))
    return draw_plate(cells, title, label(value, units), flags=flags, blanks=blanks, footnote="; ".join(footnote))


@plot
def growth_heatmap(con, table, value: str, title: str, colour_label: str = "", parameters: str = "growth_parameters"):
    """One growth parameter per well on the plate (growth rate, max OD), from the growth analysis;
    blanks and wells that did not grow say so instead of a value."""
    found = con.execute(f"SELECT well, {q(value)}, role, grew FROM {parameters}").fetchall()
    cells = {w: v for w, v, _, _ in found if v is not None}
    notes = {w: ("blank" if role == "blank" else "no growth" if not grew else "") for w, v, role, grew in found
             if v is None}
    blanks = [w for w, _, role, _ in found if role == "blank"]
    return draw_plate(cells, title, colour_label or value, notes=notes, blanks=blanks,
                      fmt="{:.2f}" if value != "max_od" else "{:.3g}",
                      footnote="dashed outline: blank wells; empty cells: blanks and wells that did not grow have no rate")


def _cell_layout(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


@plot
def growth_plate(con, table, title: str, log: bool = False, unit: str = "", by: str = "well",
                 curves: str = "growth_curves", parameters: str = "growth_parameters", names: dict | None = None):
    """Blank-corrected growth curves as small multiples: one cell per well in plate layout
    (`by`="well"), or one cell per sample of the plate map with its replicate wells (`by`="sample",
    `names` {well: sample}). Every cell shares one scale, said in the axis labels; blanks are
    grey, wells that did not grow red. Drawn as one line collection: fast at 96 or 384 wells."""
    from matplotlib.collections import LineCollection

    rows = con.execute(f"SELECT well, time_h, od_blank_corrected FROM {curves} "
                       f"WHERE od_blank_corrected IS NOT NULL ORDER BY well, time_h").fetchall()
    status = {w: (role, grew) for w, role, grew in con.execute(f"SELECT well, role, grew FROM {parameters}").fetchall()}
    series: dict = {}
    for w, t, v in rows:
        series.setdefault(w, ([], []))
        series[w][0].append(t)
        series[w][1].append(v)
    if not series:
        return None
    t0, t1 = min(r[1] for r in rows), max(r[1] for r in rows)
    hi = max(r[2] for r in rows)
    lo = 0.0 if not log else hi / 300
    if log:
        lo_l, hi_l = math.log10(lo), math.log10(hi)
    if by == "sample" and names:
        groups = sorted({names[w] for w in series if w in names}, key=_natural)
        members = {g: [w for w in series if names.get(w) == g] for g in groups}
        nrows, ncols = _cell_layout(len(groups))
        place = {g: divmod(k, ncols) for k, g in enumerate(groups)}
        cell_of = {w: place[names[w]] for w in series if w in names}
        heads = {g: f"{g} ({len(members[g])})" for g in groups}
        row_ticks, col_ticks = [], []
    else:
        letters = sorted({_plate_row(w) for w in series}, key=lambda r: (len(r), r))
        numbers = sorted({int(w[len(_plate_row(w)):]) for w in series})
        nrows, ncols = len(letters), len(numbers)
        cell_of = {w: (letters.index(_plate_row(w)), numbers.index(int(w[len(_plate_row(w)):]))) for w in series}
        # the ticks name rows and columns; a cell says only its sample (text is most of the drawing time)
        heads = {w: names[w][:10] for w in series if names and names.get(w)}
        place = {w: cell_of[w] for w in series}
        row_ticks, col_ticks = letters, numbers
    segments, colours = [], []
    for w, (ts, vs) in series.items():
        if w not in cell_of:
            continue
        i, j = cell_of[w]
        xs = [j + 0.06 + 0.88 * (t - t0) / ((t1 - t0) or 1) for t in ts]
        if log:
            ys = [nrows - 1 - i + 0.06 + 0.72 * (math.log10(max(v, lo)) - lo_l) / ((hi_l - lo_l) or 1) for v in vs]
        else:
            ys = [nrows - 1 - i + 0.06 + 0.72 * (v - lo) / ((hi - lo) or 1) for v in vs]
        segments.append(list(zip(xs, ys)))
        role, grew = status.get(w, ("sample", True))
        colours.append("#9a9a9a" if role == "blank" else COLORS[0] if grew else "#d62728")
    width = min(16.0, 1.0 + 1.05 * ncols)
    fig, ax = single(width, 0.9 + 0.8 * nrows, left=0.5, bottom=0.55, top=0.6, right=0.2)
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.9))
    for key, (i, j) in place.items():
        if heads.get(key):
            ax.text(j + 0.05, nrows - 1 - i + 0.95, heads[key], fontsize=5.5 if ncols > 8 else 7, va="top",
                    ha="left", color="#333333")
    ax.set_xlim(0, ncols)
    ax.set_ylim(0, nrows)
    ax.set_xticks([j + 0.5 for j in range(len(col_ticks))], col_ticks, fontsize=7)
    ax.set_yticks([nrows - 1 - i + 0.5 for i in range(len(row_ticks))], row_ticks, fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for k in range(1, ncols):
        ax.axvline(k, color="#cccccc", linewidth=0.6)
    for k in range(1, nrows):
        ax.axhline(k, color="#cccccc", linewidth=0.6)
    what = unit or "reading"
    scale = (f"log scale, {lo:.2g} to {hi:.2g}" if log else f"0 to {hi:.2g}")
    ax.set_xlabel(f"each cell: time 0 to {t1 - t0:.3g} h", fontsize=8)
    ax.set_ylabel(f"each cell: {what} minus blank ({scale})", fontsize=8)
    ax.set_title(title, fontsize=10, pad=16)
    fig.text(0.99, 0.005, "blue: grew; red: did not grow; grey: blank", fontsize=7, ha="right", color="#444444")
    return fig


def _natural(text: str) -> list:
    import re
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def _has(con, table, column: str) -> bool:
    return column in [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
