"""Growth curves of a kinetic plate read: blanks subtracted, one set of parameters per well.

A kinetic read is a time axis with one column per well (`Time, A1 ... H12`), or a
long table with a `well` column, a time column and a reading. Blanks are found
by blanks.py (plate map, labels, or flat wells near the minimum); the blank at
each read is the median of the blank wells that stayed flat, subtracted from
every well. Per well, on the blank-corrected curve:

  max_od              the highest corrected reading;
  growth_rate_per_h   the maximum specific growth rate: the steepest slope of ln OD
                      over a sliding window of 7 reads (5 or 3 for short runs; only where every read of
                      the window is above the detection floor, 5 x the blanks' noise);
  doubling_time_h     ln 2 / growth rate;
  lag_h               where the tangent at the steepest point meets ln of the first
                      corrected reading (the classic tangent lag);
  auc                 area under the corrected curve (trapezoids, OD x h);
  grew                the well rose more than 10 x the blanks' noise and more than a
                      tenth of the plate's largest rise.
Wells that did not grow, and blanks, get no rate, doubling time or lag.

Writes <table>/growth_parameters.csv (well, role, max_od, growth_rate_per_h,
doubling_time_h, lag_h, auc, grew) and <table>/growth_curves.csv, the long
format (well, time_h, od, od_blank_corrected); both are views of the same names
in DuckDB for the plots.

Self-contained: numpy, and the sibling blanks.py, common.py, layout.py.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
from blanks import find_blanks, is_blank_name, plate_sort_key
from common import sql_ident, sql_str
from layout import well_id

WINDOWS = ((35, 7), (15, 5), (0, 3))  # (at least this many reads, reads per sliding window)
FIRST_READS = 3           # the starting level of a well: the median of its first reads
FLOOR_NOISE = 5.0         # ln OD is used only above this many blank noise SDs
GREW_NOISE, GREW_SHARE = 10.0, 0.10
MIN_READS = 6
TO_HOURS = {"h": 1.0, "min": 1 / 60, "s": 1 / 3600, "ms": 1 / 3.6e6, "d": 24.0}
PARAMETERS = ["well", "role", "max_od", "growth_rate_per_h", "doubling_time_h", "lag_h", "auc", "grew"]
CURVES = ["well", "time_h", "od", "od_blank_corrected"]


# ---------------------------------------------------------------- recognise

def kinetic_shape(profile: dict, time: dict | None) -> dict | None:
    """{shape: wide, columns: {well: column}} or {shape: long, well, value} when the table is a kinetic read."""
    if time is None:
        return None
    cols = profile["column_profiles"]
    wells = {well_id(c["name"]): c["name"] for c in cols if c["role"] == "well"}
    if len(wells) >= 6:
        return {"shape": "wide", "columns": wells}
    well = next((c for c in cols if c["name"] in ("well", "well_id", "wells", "well_position") and
                 c["type"] == "text"), None)
    values = [c for c in cols if c["role"] == "measure" and c is not time]
    if well is None or not values or (well.get("distinct") or 0) < 3 \
            or profile["rows"] < MIN_READS * well["distinct"]:
        return None  # not a table of wells, or each well read a few times only: not a growth curve
    value = next((c for c in values if _reading_name(c["name"])), values[0])
    return {"shape": "long", "well": well["name"], "value": value["name"]}


def _reading_name(name: str) -> bool:
    return any(part in name for part in ("od", "abs", "reading", "a600", "value", "signal"))


def hours_factor(time: dict) -> tuple[float, str]:
    """(factor to hours, a note when the unit was assumed)."""
    if time["type"] in ("date", "datetime"):
        return 1 / 3600, ""
    unit = time.get("unit")
    if unit in TO_HOURS:
        return TO_HOURS[unit], ""
    return 1.0, f"the unit of {time['name']} is not known: taken as hours"


# ---------------------------------------------------------------- read

def _time_sql(time: dict) -> str:
    t = sql_ident(time["name"])
    return f"epoch({t})" if time["type"] in ("date", "datetime") else f"CAST({t} AS DOUBLE)"


def read_matrix(con, table: str, time: dict, shape: dict) -> tuple[np.ndarray, list[str], np.ndarray, dict]:
    """(times in the column's unit, wells in plate order, readings [time, well], labels per well)."""
    t = _time_sql(time)
    if shape["shape"] == "wide":
        wells = sorted(shape["columns"], key=plate_sort_key)
        rows = con.execute(f"SELECT {t}, " + ", ".join(f"CAST({sql_ident(shape['columns'][w])} AS DOUBLE)" for w in wells)
                           + f" FROM {table} WHERE {sql_ident(time['name'])} IS NOT NULL ORDER BY 1").fetchall()
        data = np.array(rows, dtype=float)
        return data[:, 0], wells, data[:, 1:], {}
    well, value = sql_ident(shape["well"]), sql_ident(shape["value"])
    rows = con.execute(f"SELECT {well}, {t}, avg(CAST({value} AS DOUBLE)) FROM {table} WHERE {well} IS NOT NULL "
                       f"AND {sql_ident(time['name'])} IS NOT NULL GROUP BY 1, 2").fetchall()
    ids = {w: well_id(str(w)) for w in {r[0] for r in rows}}
    wells = sorted({i for i in ids.values() if i}, key=plate_sort_key)
    times = np.array(sorted({r[1] for r in rows}), dtype=float)
    where_t = {v: k for k, v in enumerate(times)}
    where_w = {w: k for k, w in enumerate(wells)}
    data = np.full((len(times), len(wells)), np.nan)
    for w, tv, v in rows:
        if ids[w] and v is not None:
            data[where_t[float(tv)], where_w[ids[w]]] = v
    return times, wells, data, long_labels(con, table, shape, ids)


def long_labels(con, table: str, shape: dict, ids: dict) -> dict[str, dict[str, str]]:
    """Text columns that hold one value per well (sample, role, condition): {column: {well: value}}."""
    cols = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
    out = {}
    for c in cols:
        if c in (shape["well"], shape["value"]) or types.get(c) != "VARCHAR":
            continue
        found = con.execute(f"SELECT {sql_ident(shape['well'])}, any_value({sql_ident(c)}), count(DISTINCT {sql_ident(c)}) "
                            f"FROM {table} GROUP BY 1").fetchall()
        if found and all(n <= 1 for _, _, n in found):
            out[c] = {ids.get(w): v for w, v, _ in found if ids.get(w) and v is not None}
    return out


# ---------------------------------------------------------------- fit

def window_slopes(t: np.ndarray, y: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope of y over every window of w consecutive reads, all wells at once:
    (slopes [window, well], mean time [window], mean y [window, well]); NaN where a read is missing."""
    idx = np.arange(len(t) - w + 1)[:, None] + np.arange(w)
    tw = t[idx]
    tm = tw.mean(axis=1)
    dt = tw - tm[:, None]
    yw = y[idx]                                   # [window, w, well]
    ym = yw.mean(axis=1)
    slope = (dt[:, :, None] * (yw - ym[:, None, :])).sum(axis=1) / (dt ** 2).sum(axis=1)[:, None]
    return slope, tm, ym


def blank_curve(raw: np.ndarray, blanks: list[int]) -> np.ndarray:
    if not blanks:
        return np.zeros(raw.shape[0])
    level = np.nanmedian(raw[:, blanks], axis=1)
    return np.where(np.isnan(level), np.nanmedian(level) if np.isfinite(level).any() else 0.0, level)


def noise_of(corrected: np.ndarray, blanks: list[int]) -> float:
    """The blanks' scatter around their median (SD), else the reads' own from second differences."""
    if len(blanks) >= 2 or (len(blanks) == 1 and corrected.shape[0] > 3):
        resid = corrected[:, blanks]
        resid = resid[np.isfinite(resid)]
        if resid.size > 2:
            return float(max(np.std(resid), 1e-6))
    d2 = np.diff(corrected, n=2, axis=0)
    d2 = d2[np.isfinite(d2)]
    return float(max(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6), 1e-6)) if d2.size else 1e-3


def areas(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    out = np.full(c.shape[1], np.nan)
    for j in range(c.shape[1]):
        ok = np.isfinite(c[:, j])
        if ok.sum() >= 2:
            y, x = c[ok, j], t[ok]
            out[j] = float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)
    return out


def fit(t: np.ndarray, corrected: np.ndarray, noise: float) -> dict[str, np.ndarray]:
    """Per well: max OD, max specific growth rate, lag, AUC, starting level and rise."""
    n, m = corrected.shape
    w = next(size for reads, size in WINDOWS if n >= reads)
    floor = FLOOR_NOISE * noise
    start = np.nanmedian(corrected[:FIRST_READS], axis=0)
    top = np.nanmax(np.where(np.isfinite(corrected), corrected, -np.inf), axis=0)
    top[~np.isfinite(top)] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.where(corrected > floor, np.log(np.where(corrected > floor, corrected, 1.0)), np.nan)
        slope, tm, ym = window_slopes(t, logs, w)
        usable = np.isfinite(slope).any(axis=0)
        best = np.where(usable, np.nanargmax(np.where(np.isfinite(slope), slope, -np.inf), axis=0), 0)
        rate = np.where(usable, slope[best, np.arange(m)], np.nan)
        rate[rate <= 0] = np.nan
        ln0 = np.log(np.maximum(start, max(noise, 1e-4)))
        lag = tm[best] - (ym[best, np.arange(m)] - ln0) / rate
        lag = np.clip(lag, t[0], tm[best])
    return {"max_od": top, "rate": rate, "lag": lag - t[0], "auc": areas(t, corrected), "start": start,
            "rise": top - start, "window": w, "floor": floor}


# ---------------------------------------------------------------- the whole analysis

def analyse(con, table: str, profile: dict, time: dict, shape: dict, plate_map: dict, map_source: str,
            folder: Path) -> dict | None:
    with warnings.catch_warnings():  # a well read OVER throughout is all NaN: its figures are missing, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return _analyse(con, table, profile, time, shape, plate_map, map_source, folder)


def _analyse(con, table: str, profile: dict, time: dict, shape: dict, plate_map: dict, map_source: str,
             folder: Path) -> dict | None:
    t_raw, wells, raw, labels = read_matrix(con, table, time, shape)
    if len(t_raw) < MIN_READS or len(wells) < 2 or np.median(np.isfinite(raw).sum(axis=0)) < MIN_READS:
        return None
    factor, time_note = hours_factor(time)
    t = (t_raw - t_raw[0]) * factor if time["type"] in ("date", "datetime") else t_raw * factor
    level = dict(zip(wells, np.nanmedian(raw[:FIRST_READS], axis=0).tolist()))
    top = dict(zip(wells, np.nanmax(np.where(np.isfinite(raw), raw, -np.inf), axis=0).tolist()))
    rise = {w: top[w] - level[w] for w in wells}
    found = find_blanks(wells, level, top, rise, {k: v for k, v in plate_map.items()}, map_source, labels)
    where = {w: k for k, w in enumerate(wells)}
    span = max(top.values()) - min(level.values())
    # a blank that rose like a sample (contamination) is flagged and left out of the blank
    grown_blanks = [w for w in found["wells"] if found["kind"] != "flat" and rise[w] > 0.05 * span]
    good = [where[w] for w in found["wells"] if w not in grown_blanks]
    blank = blank_curve(raw, good)
    corrected = raw - blank[:, None]
    noise = noise_of(corrected, good)
    p = fit(t, corrected, noise)
    samples = [k for k, w in enumerate(wells) if w not in found["wells"]]
    largest = max((p["rise"][k] for k in samples if np.isfinite(p["rise"][k])), default=0.0)
    threshold = max(GREW_NOISE * noise, GREW_SHARE * largest)
    grew = np.isfinite(p["rise"]) & (p["rise"] > threshold)
    rows = []
    for k, w in enumerate(wells):
        is_blank = w in found["wells"]
        fitted = grew[k] and not is_blank and np.isfinite(p["rate"][k])
        rate = float(p["rate"][k]) if fitted else None
        rows.append({"well": w, "role": "blank" if is_blank else "sample",
                     "max_od": _r(p["max_od"][k], 4), "growth_rate_per_h": _r(rate, 4),
                     "doubling_time_h": _r(math.log(2) / rate if rate else None, 3),
                     "lag_h": _r(p["lag"][k] if fitted else None, 3), "auc": _r(p["auc"][k], 4),
                     "grew": bool(grew[k])})
    files = write_files(folder, wells, t, raw, corrected, rows)
    views(con, folder)
    names = condition_names(plate_map, labels, wells)
    readings = set((shape.get("columns") or {}).values()) | {shape.get("value")}
    unit = next((c["unit"] for c in profile["column_profiles"] if c["name"] in readings and c.get("unit")), None)
    return {"shape": shape["shape"], "time": time["name"], "time_note": time_note, "reads": len(t), "unit": unit,
            "hours": _r(float(t[-1] - t[0]), 3), "interval_h": _r(float(np.median(np.diff(t))), 4),
            "wells": wells, "columns": shape.get("columns") or {}, "value": shape.get("value"),
            "blanks": found, "grown_blanks": grown_blanks, "blank_level": _r(float(np.nanmedian(blank)), 4),
            "noise": _r(noise, 6), "floor": _r(p["floor"], 6), "window": p["window"],
            "grew_threshold": _r(threshold, 4), "parameters": rows, "conditions": names,
            "negative": negatives(wells, corrected, t, found["wells"], noise),
            "saturated": saturated_wells(wells, raw, profile, shape), "files": files}


def _r(value, digits: int):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    value = float(value)
    return None if not math.isfinite(value) else round(value, digits)


def negatives(wells: list[str], corrected: np.ndarray, t: np.ndarray, blanks: list[str], noise: float) -> dict:
    """Corrected readings below zero: within the blanks' noise (expected) or beyond it."""
    below = corrected < 0
    deep = corrected < -3 * noise
    out = {"count": int(np.nansum(below)), "min": _r(float(np.nanmin(corrected)), 4), "beyond_noise": []}
    for j, w in enumerate(wells):
        if w not in blanks and deep[:, j].any():
            k = int(np.nanargmin(corrected[:, j]))
            out["beyond_noise"].append({"well": w, "min": _r(float(corrected[k, j]), 4), "time_h": _r(float(t[k]), 3),
                                        "reads": int(deep[:, j].sum())})
    return out


def saturated_wells(wells: list[str], raw: np.ndarray, profile: dict, shape: dict) -> list[str]:
    flagged = {c["flag_for"] for c in profile["column_profiles"] if c.get("flag_for")}
    cols = shape.get("columns") or {}
    return [w for w in wells if cols.get(w) in flagged]


def condition_names(plate_map: dict, labels: dict, wells: list[str]) -> dict[str, str]:
    """{well: sample/condition name} from the plate map or the labels, blanks left out."""
    for source in (plate_map or {}, labels or {}):
        for by_well in source.values():
            names = {w: str(by_well[w]) for w in wells if by_well.get(w) and not is_blank_name(by_well[w])}
            if len(names) >= 2:
                return names
    return {}


def write_files(folder: Path, wells: list[str], t: np.ndarray, raw: np.ndarray, corrected: np.ndarray,
                rows: list[dict]) -> dict:
    params, curves = folder / "growth_parameters.csv", folder / "growth_curves.csv"
    with open(params, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(PARAMETERS)
        writer.writerows([["" if r[k] is None else str(r[k]).lower() if k == "grew" else r[k] for k in PARAMETERS]
                          for r in rows])
    with open(curves, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CURVES)
        times = [f"{v:.6g}" for v in t]
        for j, w in enumerate(wells):
            writer.writerows([w, times[i], _cell(raw[i, j]), _cell(corrected[i, j])] for i in range(len(t)))
    return {"parameters": f"{folder.name}/{params.name}", "curves": f"{folder.name}/{curves.name}"}


def _cell(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6g}"


def views(con, folder: Path) -> None:
    """growth_parameters and growth_curves as DuckDB views of the written files, for the plots."""
    con.execute(f"CREATE OR REPLACE VIEW growth_parameters AS SELECT * FROM read_csv("
                f"{sql_str(str(folder / 'growth_parameters.csv'))}, header=true, columns={{'well': 'VARCHAR', "
                f"'role': 'VARCHAR', 'max_od': 'DOUBLE', 'growth_rate_per_h': 'DOUBLE', 'doubling_time_h': 'DOUBLE', "
                f"'lag_h': 'DOUBLE', 'auc': 'DOUBLE', 'grew': 'BOOLEAN'}})")
    con.execute(f"CREATE OR REPLACE VIEW growth_curves AS SELECT * FROM read_csv("
                f"{sql_str(str(folder / 'growth_curves.csv'))}, header=true, columns={{'well': 'VARCHAR', "
                f"'time_h': 'DOUBLE', 'od': 'DOUBLE', 'od_blank_corrected': 'DOUBLE'}})")
