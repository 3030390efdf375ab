"""Units of measurement: read from a header (`Culmen Length (mm)`, `Time [s]`, `T° 600`),
from a units row under the header (`lb`, `in`, `bpm`), or from a time column's name
(`time_h`, `hours`). They become each column's `unit` in the profile.

Self-contained: standard library only.
"""

from __future__ import annotations

import re

# Spellings that lose meaning in ASCII or snake_case, as the canonical symbol.
_CANONICAL = {
    "o/oo": "‰", "per mil": "‰", "permil": "‰", "degc": "°C", "deg c": "°C", "oc": "°C", "° c": "°C",
    "°c": "°C", "degf": "°F", "deg f": "°F", "°f": "°F", "μm": "µm", "μl": "µL", "ul": "µL",
    "ug": "µg", "μg": "µg", "hrs": "h", "hr": "h", "hours": "h", "mins": "min", "minutes": "min",
    "sec": "s", "secs": "s", "seconds": "s",
}
_BRACKETED = re.compile(r"[\(\[]\s*([^()\[\]]{1,20}?)\s*[\)\]]\s*$")
_TEMPERATURE = re.compile(r"^\s*(T\s*°|Temp\.?)(\s|\[|\(|$)", re.IGNORECASE)
# A units-row cell: short, no digits-only value, made of unit characters (lb, mg/dL, °C, %, cells/mL, 10^3/uL)
_UNIT_TOKEN = re.compile(r"^[\(\[]?\s*[A-Za-zµμ°%‰Å][A-Za-z0-9µμ°%‰Å/·.\^\-\*² ]{0,14}[\)\]]?$|^[\(\[]?%[\)\]]?$")
# Words that fill a bracket but are not units: "Comments (optional)", "Weight (g) (n=3)"
_NOT_UNITS = {"optional", "required", "n", "id", "yes/no", "y/n", "text", "notes", "mean", "sd", "se", "sem",
              "avg", "median", "raw", "corrected", "blank", "total", "estimated", "approx", "calc", "calculated"}
_TIME_NAME = re.compile(r"^(time|t|elapsed|elapsed_time|duration|age)_(h|hr|hrs|hours|min|mins|minutes|s|sec|secs|seconds|d|days)$"
                        r"|^(hours|hrs|minutes|mins|seconds|secs|days)$")
_TIME_UNIT = {"h": "h", "hr": "h", "hrs": "h", "hours": "h", "min": "min", "mins": "min", "minutes": "min",
              "s": "s", "sec": "s", "secs": "s", "seconds": "s", "d": "d", "days": "d"}
MISSING_WORDS = {"", "na", "n/a", "n.a.", "nan", "null", "-", "--", "#n/a", "none"}


def canonical(unit: str) -> str:
    unit = unit.strip()
    return _CANONICAL.get(unit.lower(), unit)


def header_unit(header: str) -> str | None:
    """The unit a header names, or None: `Body Mass (g)` -> g, `Delta 15 N (o/oo)` -> ‰,
    `Time [s]` -> s, `T° 600` -> °C."""
    match = _BRACKETED.search(header)
    if match:
        inner = match.group(1).strip()
        if inner.lower() not in _NOT_UNITS and not inner.replace(".", "").isdigit() and len(inner.split()) <= 3:
            return canonical(inner)
    if _TEMPERATURE.match(header):
        return "°C"
    return None


def name_unit(name: str) -> str | None:
    """A unit implied by a snake_case time column's name: time_h -> h, minutes -> min."""
    match = _TIME_NAME.match(name)
    if not match:
        return None
    return _TIME_UNIT[match.group(2) or match.group(3)]


def is_unit_token(cell: str) -> bool:
    text = cell.strip()
    if not text or text.lower() in MISSING_WORDS or text.lower().strip("()[]") in _NOT_UNITS:
        return False
    if re.fullmatch(r"[+-]?[0-9.,eE]+", text):  # a number
        return False
    return bool(_UNIT_TOKEN.match(text)) and len(text.split()) <= 2


def unit_row(cells: list[str], numeric_below: list[bool]) -> list[str] | None:
    """The units when `cells` (the first line under the header) is a units row, else None.

    A units row holds no numbers, only unit-like words, at least one of them over a
    column whose values below are numbers; text columns may leave their cell empty."""
    cells = [c.strip() for c in cells] + [""] * (len(numeric_below) - len(cells))
    filled = [(c, numeric) for c, numeric in zip(cells, numeric_below) if c]
    if not filled or not all(is_unit_token(c) for c, _ in filled):
        return None
    over_numbers = sum(numeric for _, numeric in filled)
    if over_numbers == 0 or over_numbers < len(filled) / 2:
        return None
    return [canonical(c.strip("()[] ")) if c else "" for c in cells[: len(numeric_below)]]


# ---------------------------------------------------------------- units of a plate reader's readings

_OD_TOKEN = re.compile(r"\b(OD|A)\s?(\d{3})\b")
_GEN5_READ = re.compile(r"^Read\s*\d*\s*:\s*(\d{3})\s*$", re.IGNORECASE)
_WAVELENGTH = re.compile(r"(wavelength|wavelengths)\s*[:;,\t ]\s*(\d{3})\b", re.IGNORECASE)
_OTHER_MODES = re.compile(r"fluorescen|luminescen|\bRFU\b|\bRLU\b", re.IGNORECASE)


def absorbance_unit(wavelength: str) -> str:
    """OD600 for turbidity (540-700 nm), A260, A450 ... for absorbance at other wavelengths."""
    return f"OD{wavelength}" if 540 <= int(wavelength) <= 700 else f"A{wavelength}"


def reading_unit(lines: list[str]) -> str | None:
    """The unit of a plate reader's readings from the file's header lines: `OD600` or `Read,OD600`
    named outright, Gen5's `Read 1:600`, or Tecan's `Measurement Wavelength;600;nm` in absorbance mode."""
    text = "\n".join(lines)
    named = _OD_TOKEN.search(text)
    if named and named.group(1) == "OD":
        return f"OD{named.group(2)}"
    if _OTHER_MODES.search(text):
        return None
    for line in lines:
        cells = [c.strip() for c in re.split(r"[\t;,]", line) if c.strip()]
        match = _GEN5_READ.match(" ".join(cells))
        if match:
            return absorbance_unit(match.group(1))
    match = _WAVELENGTH.search(text.replace("Measurement Wavelength", "wavelength"))
    if match and re.search(r"absorbance", text, re.IGNORECASE):
        return absorbance_unit(match.group(2))
    return None


def read_units_file(path) -> dict[str, str]:
    """A lab's units table (my_files/units.csv): a `column` (or variable, quantity, name) column and a `unit`
    (or units) column. {column name as written: unit}; empty when the file is not one."""
    import csv
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt") or path.stat().st_size > 1024 * 1024:
        return {}
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        rows = list(csv.reader(text.splitlines(), dialect))
    except csv.Error:
        rows = list(csv.reader(text.splitlines()))
    if len(rows) < 2:
        return {}
    header = [h.strip().lower() for h in rows[0]]
    name = next((header.index(h) for h in ("column", "variable", "quantity", "name", "field", "measurement")
                 if h in header), None)
    unit = next((header.index(h) for h in ("unit", "units") if h in header), None)
    if name is None or unit is None:
        return {}
    return {r[name].strip(): canonical(r[unit]) for r in rows[1:]
            if len(r) > max(name, unit) and r[name].strip() and r[unit].strip()}
