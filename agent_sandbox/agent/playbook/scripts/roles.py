"""What each column of a profiled table is for: the rules that choose plots and findings.

Roles: time (a time axis), id (an identifier: no plot), well (one well of a plate
per column), plate (well/row/column/plate of a table of wells), flag (markers of
out-of-range readings), label (sample names from a plate map), factor (a
categorical variable with few levels), binary (0/1), measure (a number measured),
constant, text (anything else).

Self-contained: standard library and the sibling layout.py.
"""

from __future__ import annotations

import re

from layout import well_id

ID_NAME = re.compile(r"(^|_)(id|ids|no|nr|num|number|index|idx|row_num|key|code|accession|barcode|uuid|name|cycle)$")
TIME_NAME = re.compile(r"^(time|t|elapsed|duration|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?)(_[a-z0-9]+)?$"
                       r"|(^|_)(elapsed_time|time_h|time_min|time_s|cycle_time)$")
YEAR_NAME = re.compile(r"(^|_)(year|yr)$")
# In order of preference: the first factor plotted is the one named most like an experiment's.
FACTOR_WORDS = ["species", "treatment", "strain", "diagnosis", "genotype", "condition", "group", "dose", "variety",
                "cultivar", "class", "type", "genus", "medium", "media", "stain", "cohort", "arm", "status", "category",
                "sex", "gender", "site", "origin", "island", "region", "batch", "phase", "cylinders", "replicate", "rep"]
FACTOR_NAME = re.compile("|".join(FACTOR_WORDS))
FREE_TEXT_NAME = re.compile(r"comment|note|remark|description|memo")
OUTCOME_NAME = re.compile(r"(^|_)(y|target|response|outcome|yield|result|score|growth|rate|activity|efficiency|survival|loss"
                          r"|mpg|miles_per_gallon|price|progression|quality|output|effect|inhibition|viability)($|_)")
# Quantities that are zero or more: optical density, concentrations, counts, sizes.
NONNEGATIVE_NAME = re.compile(r"(^|_)(od|od\d{3}|a\d{3}|abs|absorbance|optical_density|conc|concentration|count|counts|cfu"
                              r"|cells|mass|weight|length|width|height|depth|area|volume|intensity|fluorescence|rfu|rlu"
                              r"|luminescence|mic|titer|titre|abundance|size|diameter|biomass|reads)($|_|\d)")
NONNEGATIVE_UNITS = {"mm", "cm", "m", "g", "kg", "mg", "µg", "ng", "µm", "nm", "µM", "mM", "M", "nM", "mg/L", "g/L",
                     "µg/mL", "mg/mL", "cells/mL", "CFU/mL", "CFU", "AU", "OD", "RFU", "RLU", "lb", "in"}
MAX_LEVELS = 20
PLATE_COLUMNS = ("plate", "well", "row", "column")


def is_numeric(c: dict) -> bool:
    return c["type"] in ("integer", "number")


def assign_roles(columns: list[dict], rows: int, plate_table: bool) -> None:
    """Set each column entry's `role` in place."""
    numeric = [c for c in columns if is_numeric(c)]
    wells = [well_id(c["name"]) for c in numeric if well_id(c["name"])]
    # well columns of a plate: several, starting at row A, most of the numbers (not m1..m29 of a survey)
    wide_plate = len(wells) >= 6 and any(w.startswith("A") and w[1].isdigit() for w in wells) \
        and len(wells) >= 0.5 * len(numeric)
    for c in columns:
        c["role"] = role_of(c, rows, plate_table, wide_plate)


def role_of(c: dict, rows: int, plate_table: bool, wide_plate: bool) -> str:
    name, distinct = c["name"], c.get("distinct") or 0
    if c.get("flag_for"):
        return "flag"
    if plate_table and name in PLATE_COLUMNS:
        return "plate"
    if c["type"] in ("date", "datetime", "time"):
        return "time"
    if is_numeric(c):
        if wide_plate and well_id(name):
            return "well"
        if c.get("elapsed") or TIME_NAME.search(name):
            return "time"
        if YEAR_NAME.search(name) and c.get("min") is not None and 1000 <= c["min"] <= c["max"] <= 2999:
            return "time"
        if distinct <= 1:
            return "constant"
        if ID_NAME.search(name) and c["type"] == "integer":
            return "id"
        if distinct == 2 and c.get("min") == 0 and c.get("max") == 1:
            return "binary"
        if c["type"] == "integer" and distinct <= 12 and FACTOR_NAME.search(name) and distinct < rows / 2:
            return "factor"
        return "measure"
    if distinct <= 1:
        return "constant"
    if plate_table:
        return "label"
    if ID_NAME.search(name) and distinct > 0.5 * rows:
        return "id"
    if distinct >= 0.9 * rows and rows > 20:
        return "id"
    if 2 <= distinct <= MAX_LEVELS and distinct <= max(2, rows // 3) and c.get("missing_pct", 0) < 50 \
            and not FREE_TEXT_NAME.search(name):
        return "factor"
    return "text"


def identifier(name: str, type_: str) -> bool:
    """An integer column named like an ID (sample_id, run_no) that is not a time, a year or a well:
    role_of makes it an identifier whatever its values, so the profile skips its quartiles."""
    return type_ == "integer" and bool(ID_NAME.search(name)) and not (TIME_NAME.search(name) or YEAR_NAME.search(name)
                                                                       or well_id(name))


def time_axis(columns: list[dict]) -> dict | None:
    """The column to plot others against: a date, else an elapsed or time-named number, else a year."""
    times = [c for c in columns if c.get("role") == "time" and (c.get("distinct") or 0) > 2]
    for kinds in (("date", "datetime"), ("number", "integer", "time")):
        found = [c for c in times if c["type"] in kinds and not YEAR_NAME.search(c["name"])]
        if found:
            return found[0]
    return times[0] if times else None


def log_range(c: dict) -> bool:
    """Positive values spanning three or more orders of magnitude: drawn on a log scale."""
    lo, hi = c.get("min"), c.get("max")
    return is_numeric(c) and lo is not None and lo > 0 and hi / lo >= 1000


def usually_nonnegative(c: dict) -> bool:
    return c.get("role") == "well" or bool(NONNEGATIVE_NAME.search(c["name"])) or c.get("unit") in NONNEGATIVE_UNITS


def factor_preference(c: dict) -> tuple:
    """Factors named like one (species, treatment, ... in FACTOR_WORDS' order) first, then those with fewer levels."""
    rank = next((k for k, word in enumerate(FACTOR_WORDS) if word in c["name"]), len(FACTOR_WORDS))
    return (rank, c.get("distinct") or 0)
