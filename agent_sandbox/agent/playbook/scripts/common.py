"""Small helpers every playbook script uses: SQL quoting, column names, JSON values.

Self-contained: standard library only (the other scripts import it as a sibling,
the agent package imports it as agent_sandbox.agent.playbook.scripts.common).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata

MB = 1024 * 1024


def sql_str(value) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


# "T° 600" (BioTek Gen5) and "Temp." are temperatures; without this the degree sign
# vanishes and the column becomes a bare "t_600".
_TEMPERATURE = re.compile(r"^\s*(T\s*°|Temp\.?)(?=\s|\[|\(|$)", re.IGNORECASE)


def snake_case(name: str) -> str:
    text = _TEMPERATURE.sub("temperature", str(name))
    text = text.replace("µ", "u").replace("μ", "u").replace("%", " pct ").replace("‰", " permil ").replace("#", " num ")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z0-9])([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if text and text[0].isdigit():
        text = "col_" + text
    return text


def unique_snake_names(names: list[str]) -> list[str]:
    out, seen = [], set()
    for i, name in enumerate(names):
        base = snake_case(name) or f"column_{i + 1}"
        new, n = base, 1
        while new in seen:
            n += 1
            new = f"{base}_{n}"
        seen.add(new)
        out.append(new)
    return out


def plain(value):
    """A JSON-friendly version of a DuckDB value."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def row_list(rows: list[int], total: int | None = None, shown: int = 10) -> str:
    """'rows 3, 9, 12' or 'rows 3, 9, 12, ... (45 in all)'."""
    total = len(rows) if total is None else total
    listed = ", ".join(str(r) for r in rows[:shown])
    more = f", ... ({total:,} in all)" if total > min(len(rows), shown) else ""
    return ("row " if total == 1 else "rows ") + listed + more
