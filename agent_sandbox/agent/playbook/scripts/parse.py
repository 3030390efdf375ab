"""SQL expressions that read text cells as values: trimming, missing markers,
instrument range markers, numbers, dates, elapsed times.

Every parse is guarded by a regular expression so that a cast never guesses
(DuckDB's cast would round '3.5' to an integer) and so that the cast is not
pushed into the CSV reader, where a failure would stop the read.

Self-contained: standard library only (the expressions run in DuckDB).
"""

from __future__ import annotations

from common import sql_str

MISSING_MARKERS = ["", "na", "n/a", "n.a.", "nan", "null", "-", "--", "#n/a"]
MARKER_BYTES = max(len(m.encode()) for m in MISSING_MARKERS)
EDGE_SPACE = r"^[\s\xa0]|[\s\xa0]$"        # leading or trailing whitespace, no-break space included
EDGE_SPACES = r"^[\s\xa0]+|[\s\xa0]+$"
INT_RE = r"\s*[+-]?[0-9]+\s*"
NUM_RE = r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"
NUM_COMMA_RE = r"\s*[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)([eE][+-]?[0-9]+)?\s*"
# Readings outside the instrument's range: above it (saturated) or below it (not detected).
# They are missing values, never a reason to keep a column of numbers as text.
HIGH_RE = r"(?i)\s*(over|ovrflw|overflow|sat|saturated|tntc|>\s*=?\s*([0-9.,]+([eE][+-]?[0-9]+)?|[a-z]+))\s*"
LOW_RE = (r"(?i)\s*(<\s*=?\s*([0-9.,]+([eE][+-]?[0-9]+)?|[a-z]+)|n\.\s?d\.?|nd|bdl|blq|bql|below\s+(lod|loq|range)"
          r"|not\s+detected|undetected)\s*")
RANGE_RE = f"({HIGH_RE})|({LOW_RE})"
ELAPSED_RE = r"\s*([0-9]+[ .])?[0-9]+:[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?\s*"
YMD_RE = r"\s*(1[89]|20|21)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])\s*"
ISO = "ISO 8601"
# Day-first before month-first: when both fit equally we read 03/04 as 3 April.
DATE_FORMATS = [
    "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d",
    "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d %b %Y", "%b %d, %Y", "%d-%b-%Y",
]
# A cheap pre-check before trying every format: 2026-03-14, 14/03/2026, 14 Mar 2026, Mar 14, 2026
DATE_LIKE = r"^([0-9]{1,4}[-/. ][0-9A-Za-z]{1,9}[-/., ]+[0-9]{2,4}|[A-Za-z]{3,9}\.? [0-9]{1,2},? [0-9]{4})"
NUMERIC_KINDS = ("integer", "number", "elapsed")


EDGE_CHARS = (" ", "\t", "\n", "\r", "\f", "\xa0")  # what EDGE_SPACE matches at a cell's end


def trim(col: str) -> str:
    # trim() with a character list is several times slower than this check-then-strip.
    return (f"CASE WHEN regexp_matches({col}, {sql_str(EDGE_SPACE)}) "
            f"THEN regexp_replace({col}, {sql_str(EDGE_SPACES)}, '', 'g') ELSE {col} END")


def trim_once(col: str) -> str:
    """trim() for a cell of every row, computed once (its expression is long: nested in others,
    as is_marker(trim(x)) nests it, it would cost more to plan than the regular expression costs
    on a sample). A code-point test on the first character and suffix tests on the last cost half
    of the regular expression, which scans the whole cell for its `$`; they let through a few
    more cells (another control character first), which the strip leaves unchanged."""
    ends = " OR ".join(f"ends_with({col}, {sql_str(c)})" for c in EDGE_CHARS)
    return (f"CASE WHEN ord({col}) <= 32 OR ord({col}) = 160 OR {ends} "
            f"THEN regexp_replace({col}, {sql_str(EDGE_SPACES)}, '', 'g') ELSE {col} END")


def is_marker(text: str) -> str:
    """True when a trimmed cell is a missing marker; the length test spares lower() on long cells."""
    return (f"(CASE WHEN strlen({text}) <= {MARKER_BYTES} "
            f"THEN lower({text}) IN ({', '.join(sql_str(m) for m in MISSING_MARKERS)}) ELSE false END)")


def matches(v: str, regex: str) -> str:
    return f"regexp_full_match({v}, {sql_str(regex)})"


def swap_day_month(fmt: str) -> str:
    return fmt.replace("%d", "%X").replace("%m", "%d").replace("%X", "%m")


def parse(v: str, kind: str, formats: list[str] = (), decimal_comma: bool = False) -> str:
    """`v` (text, maybe padded) as a value of `kind`, NULL when it does not read as one."""
    if kind == "integer":
        return f"(CASE WHEN {matches(v, INT_RE)} THEN TRY_CAST({v} AS BIGINT) END)"
    if kind == "number":
        cast = f"TRY_CAST(replace({v}, ',', '.') AS DOUBLE)" if decimal_comma else f"TRY_CAST({v} AS DOUBLE)"
        return f"(CASE WHEN {matches(v, NUM_COMMA_RE if decimal_comma else NUM_RE)} THEN {cast} END)"
    if kind == "elapsed":  # h:mm:ss, d.hh:mm:ss or d hh:mm:ss as hours
        text = f"regexp_replace(trim({v}), '^([0-9]+)[ .]([0-9]+:)', '\\1 days \\2')"
        return f"(CASE WHEN {matches(v, ELAPSED_RE)} THEN epoch(TRY_CAST({text} AS INTERVAL)) / 3600.0 END)"
    if kind == "ymd":
        return f"(CASE WHEN {matches(v, YMD_RE)} THEN CAST(try_strptime(trim({v}), '%Y%m%d') AS DATE) END)"
    if kind == "timeofday":
        return f"(CASE WHEN {matches(v, ELAPSED_RE)} THEN TRY_CAST(trim({v}) AS TIME) END)"
    text = f"trim({v})"
    parts = [f"TRY_CAST({text} AS TIMESTAMP)" if f == ISO else f"try_strptime({text}, {sql_str(f)})" for f in formats]
    ts = parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
    return f"CAST({ts} AS DATE)" if kind == "date" else ts
