"""A large cleaned table for the table explorer's tests and benchmark: a scripted job's action
writes it with DuckDB inside the sandbox (1.2 M rows in about a second), with a known truth.

Patch-clamp-like recordings: `voltage_mv` lies in [-90, -56.01] except one row (TRUE_MAX_ROW)
at TRUE_MAX, far past the first rows of the file; `current_pa` is missing on every 7th row."""

from __future__ import annotations

ROWS = 1_200_000
TRUE_MAX, TRUE_MAX_ROW = -40.3, 777_777
TABLE = "recordings"
SQL = f"""COPY (SELECT i AS id, 'cell_' || (i % 5000) AS cell, i / 1000.0 AS time_s,
  CASE WHEN i = {TRUE_MAX_ROW} THEN {TRUE_MAX} ELSE -90 + (hash(i) % 3400) / 100.0 END AS voltage_mv,
  CASE WHEN i % 7 = 0 THEN NULL ELSE (hash(i * 3) % 1000) / 10.0 END AS current_pa,
  ['ctrl', 'drug_a', 'drug_b', 'wash'][1 + i % 4] AS condition
  FROM range({{rows}}) t(i)) TO '/outputs/{TABLE}/{TABLE}.parquet' (FORMAT parquet)"""


def write_action(rows: int = ROWS) -> dict:
    """A scripted `python` action that writes the table to /outputs/recordings/recordings.parquet."""
    code = (f"import os, duckdb\nos.makedirs('/outputs/{TABLE}', exist_ok=True)\n"
            f"duckdb.connect().execute({SQL.format(rows=rows)!r})\n")
    return {"kind": "python", "code": code, "thought": "Write the recordings table"}
