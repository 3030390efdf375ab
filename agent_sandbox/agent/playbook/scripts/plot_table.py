"""Choose a table's plots from what the table is, write them as a script a scientist can
edit and rerun (RESULTS/scripts/plot_<table>.py), and draw them.

The rules, in order (at most MAX_PLOTS per table):
  a table of wells -> a plate heatmap per reading (OVER wells hatched, blanks outlined);
  a kinetic read with its growth analysis -> blank-corrected curves in plate layout (linear and log),
      replicate wells per sample when a plate map names them, heatmaps of growth rate and max OD;
      (well columns over time without one -> the readings overlaid, on a log scale, per plate row);
  a time axis -> each measurement over time, one line per group, a mean with its min-max band where
      rows share a time point or there are too many to draw (said on the axis), no line across gaps;
  a factor with few levels (up to 10) -> each measurement by group (box plots, or every point for small groups),
      for the best factor and a second one named like an experiment's;
  a measurement named like an outcome (or the last of a small table of measurements), among few ->
      each input against it;
  four or more measurements -> a correlation heatmap of all of them;
  measurements not drawn by group -> histograms (log scale when they span orders of magnitude);
  0/1 columns and factors -> counts. Identifiers get no plot.
Each plot is recorded as {kind, columns, path, title} so a reader can see why it was chosen.

Self-contained: depends on the sibling blanks.py, common.py, roles.py and plots.py (matplotlib), loaded
when drawing.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from blanks import well_range
from common import snake_case
from roles import FACTOR_NAME, OUTCOME_NAME, factor_preference, log_range, time_axis

MAX_PLOTS = 12
MAX_PANELS = 12
MAX_SERIES = 6
STRIP_MAX_GROUP = 30     # groups this small are drawn point by point
FEW_LEVELS = 10          # a factor with more levels is not drawn as groups
SMALL_TABLE = 200        # rows of a table small enough to read its last column as the outcome
MAX_SAMPLES = 48         # a plate map with more samples than this is drawn in plate layout only
NO_UNITS = ("counts", "correlation_heatmap", "growth_plate", "growth_heatmap")  # these say their units otherwise


def choose_plots(profile: dict, name: str) -> list[dict]:
    cols = profile["column_profiles"]
    units = {c["name"]: c["unit"] for c in cols if c.get("unit")}
    chosen: list[dict] = []

    def add(kind: str, func: str, shown: list[str], title: str, **kwargs) -> None:
        if len(chosen) < MAX_PLOTS:
            slug = snake_case("_".join(shown[:3]))[:60] or "all"
            path = f"{name}/plots/{name}_{kind}_{slug}.png"
            n = 1
            while any(p["path"] == path for p in chosen):
                n += 1
                path = f"{name}/plots/{name}_{kind}_{slug}_{n}.png"
            used = {k: v for k, v in kwargs.items() if v not in (None, [], False)}
            if any(c in units for c in shown) and func not in NO_UNITS:
                used["units"] = {c: units[c] for c in shown if c in units}
            chosen.append({"kind": kind, "func": func, "columns": shown, "title": title, "path": path, "args": used})

    measures = [c for c in cols if c["role"] == "measure"]
    wells = [c for c in cols if c["role"] == "well"]
    time = time_axis(cols)
    logs = [c["name"] for c in measures if log_range(c)]
    well_names = [c["name"] for c in wells]
    blanks = profile.get("blanks") or {}
    if any(c["role"] == "plate" and c["name"] == "well" for c in cols):
        for m in measures[:4]:
            add("plate_heatmap", "plate_heatmap", [m["name"]], f"{m['name']} across the plate", value=m["name"],
                blanks=blanks.get("wells") if blanks.get("value") == m["name"] else None,
                blank_rule=blanks.get("rule") if blanks.get("value") == m["name"] else None)
    if blanks.get("value") and not any(c["role"] == "plate" for c in cols):  # a table of wells, not a grid
        add("plate_heatmap", "plate_heatmap", [blanks["value"]], f"{blanks['value']} across the plate",
            value=blanks["value"], blanks=blanks.get("wells"), blank_rule=blanks.get("rule"))
    growth = profile.get("growth")
    if growth:
        growth_plots(add, growth, cols, time)
    elif wells and time:
        t = time["name"]
        add("growth_curves", "growth_curves", [t] + well_names, f"All {len(wells)} wells over {t}", time=t,
            wells=well_names)
        if sum((c.get("min") or 0) > 0 for c in wells) >= len(wells) / 2:
            add("growth_curves_log", "growth_curves", [t] + well_names, f"All wells over {t}, log scale", time=t,
                wells=well_names, log=True)
        add("growth_curves_by_row", "growth_curves", [t] + well_names, "Wells by plate row", time=t,
            wells=well_names, by_row=True)
        add("plate_heatmap", "plate_heatmap", well_names, "Last reading of each well", value="last reading",
            wells=well_names, time=t)
    if time and measures:
        series = [m["name"] for m in measures if m is not time][:MAX_SERIES]
        repeated = (time.get("distinct") or 0) < profile["rows"] - (time.get("missing") or 0)
        lines = sorted([c for c in cols if c["role"] == "factor" and 2 <= (c.get("distinct") or 0) <= MAX_SERIES],
                       key=factor_preference) if repeated else []
        if series:
            add("timeseries", "timeseries", [time["name"]] + series, f"Over {time['name']}"
                + (f", by {lines[0]['name']}" if lines else ""), time=time["name"], columns=series,
                log_scale=[c for c in series if c in logs], group=lines[0]["name"] if lines else None)
    factors = sorted([c for c in cols if c["role"] == "factor" and (c.get("distinct") or 0) <= FEW_LEVELS],
                     key=factor_preference)
    # the best factor, and a second one only when it is named like an experiment's (species, sex, dose, ...)
    factors = factors[:1] + [f for f in factors[1:2] if FACTOR_NAME.search(f["name"])]
    grouped: set[str] = set()
    for f in factors if measures else []:
        largest = max((t["count"] for t in f.get("top", [])), default=0)
        strip = 0 < largest <= STRIP_MAX_GROUP
        panel = [m["name"] for m in measures][:MAX_PANELS]
        add("strip_by_group" if strip else "box_by_group", "box_by_group", [f["name"]] + panel,
            f"By {f['name']}", group=f["name"], columns=panel, log_scale=[c for c in panel if c in logs], strip=strip)
        grouped.update(panel)
    outcome = next((m for m in measures if OUTCOME_NAME.search(m["name"])), None) or last_outcome(profile, measures, time)
    if outcome and 2 <= len(measures) <= 15:
        inputs = [m["name"] for m in measures if m is not outcome][:MAX_PANELS]
        add("scatter_vs_outcome", "scatter_vs_outcome", [outcome["name"]] + inputs, f"Against {outcome['name']}",
            outcome=outcome["name"], inputs=inputs, log_scale=[c for c in inputs + [outcome["name"]] if c in logs])
    if len(measures) >= 4:
        names = [m["name"] for m in measures]
        add("correlation_heatmap", "correlation_heatmap", names, f"Correlation of {len(names)} numeric columns",
            columns=names)
    for m in measures if not growth else []:  # the distributions not already drawn (a plate's temperature: over time)
        if m.get("min") is not None and m["min"] != m["max"] and m["name"] not in grouped:
            log = m["name"] in logs
            add("histogram", "histogram", [m["name"]], f"Distribution of {m['name']}" + (" (log scale)" if log else ""),
                column=m["name"], log=log)
    for c in cols:
        if c["role"] == "binary" or (c["role"] == "factor" and not measures):
            add("counts", "counts", [c["name"]], f"Rows per value of {c['name']}", column=c["name"])
    return chosen


def last_outcome(profile: dict, measures: list[dict], time: dict | None) -> dict | None:
    """In a small table of a few measurements and nothing else (a regression dataset such as
    stackloss), the last column is the outcome by the usual convention."""
    cols = profile["column_profiles"]
    others = [c for c in cols if c["role"] not in ("measure", "id", "constant")]
    if time is None and not others and profile["rows"] <= SMALL_TABLE and 3 <= len(measures) <= 8 \
            and cols[-1] is measures[-1]:
        return measures[-1]
    return None


def growth_plots(add, growth: dict, cols: list[dict], time: dict) -> None:
    """A kinetic read's growth analysis: blank-corrected curves in plate layout (linear and log),
    by sample when a plate map names them, and heatmaps of growth rate and max OD."""
    columns = [time["name"]] + (list(growth["columns"].values()) if growth["columns"] else [growth["value"]])
    unit = next((c.get("unit") for c in cols if c["name"] in columns[1:] and c.get("unit")), None) or ""
    od = unit or "OD"
    n = len(growth["wells"])
    blank_note = f"blanks {well_range(growth['blanks']['wells'])}" if growth["blanks"]["wells"] else "no blank found"
    add("growth_curves", "growth_plate", columns, f"{n} wells, {od} minus blank ({blank_note}), plate layout",
        unit=unit)
    add("growth_curves_log", "growth_plate", columns, f"{n} wells, {od} minus blank, log scale, plate layout",
        unit=unit, log=True)
    names = growth.get("conditions") or {}
    if 2 <= len(set(names.values())) <= MAX_SAMPLES and len(set(names.values())) < len(names):
        add("growth_by_sample", "growth_plate", columns, f"Replicate wells of each sample ({od} minus blank)",
            unit=unit, by="sample", names=names)
    add("growth_rate_heatmap", "growth_heatmap", ["growth_rate_per_h"], "Maximum specific growth rate (1/h) per well",
        value="growth_rate_per_h", colour_label="growth rate (1/h)")
    add("max_od_heatmap", "growth_heatmap", ["max_od"], f"Maximum {od} minus blank per well", value="max_od",
        colour_label=f"max {od} minus blank")


def script_text(name: str, source: str, chosen: list[dict]) -> str:
    calls = []
    for p in chosen:
        args = ",\n        ".join(f"{k}={v!r}" for k, v in p["args"].items())
        calls.append(f"    # {p['kind']}: {', '.join(p['columns'][:6])}{' ...' if len(p['columns']) > 6 else ''}\n"
                     f"    plots.{p['func']}(\n        con, table, results / {p['path']!r}, title={p['title']!r},\n"
                     f"        {args})")
    body = "\n".join(calls) if calls else "    pass  # no column of this table calls for a plot"
    return f'''"""Plots of the table {name} (from {source}), chosen from its structure by analyze_table.py.

Edit the calls below (columns, titles, log scales) and rerun from the results folder:
    python scripts/plot_{name}.py
Each call reads the cleaned table {name}/{name}.parquet with DuckDB, every row, and saves one PNG.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plots  # noqa: E402  (matplotlib is imported once, here)

RESULTS = Path(__file__).resolve().parent.parent


def draw(con, table="clean", results=RESULTS):
{body}


if __name__ == "__main__":
    draw(plots.open_table(RESULTS / "{name}" / "{name}.parquet"))  # with the growth analysis' tables, if any
'''


def plot_table(con, table: str, profile: dict, out: Path, name: str, source: str) -> list[dict]:
    """Write scripts/plot_<name>.py, run it on `table` in this process, and return the plots drawn."""
    chosen = choose_plots(profile, name)
    scripts = out / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    for module in ("plots.py", "common.py"):  # the script imports them from beside itself
        if not (scripts / module).exists() and scripts.resolve() != here:
            shutil.copyfile(here / module, scripts / module)
    script = scripts / f"plot_{name}.py"
    script.write_text(script_text(name, source, chosen), encoding="utf-8")
    (out / name / "plots").mkdir(parents=True, exist_ok=True)
    runpy.run_path(str(script))["draw"](con, table, out)
    made = []
    for p in chosen:
        if (out / p["path"]).is_file():
            entry = {"kind": p["kind"], "columns": p["columns"], "path": p["path"], "title": p["title"]}
            logs = p["args"].get("log_scale") or ([p["columns"][0]] if p["args"].get("log") and p["func"] == "histogram"
                                                   else p["columns"][1:] if p["args"].get("log") else [])
            if logs:
                entry["log_scale"] = logs
            made.append(entry)
    return made
