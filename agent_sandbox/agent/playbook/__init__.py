"""The offline playbook's analysis code.

The real work is in `scripts/`: self-contained Python files (duckdb, pandas,
pyarrow, openpyxl, matplotlib, numpy; nothing from agent_sandbox) that the offline
model writes into `<outputs>/scripts/` and runs as shell commands, so the log
shows real steps and anyone can rerun them without the agent.
"""

from __future__ import annotations

from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
# Modules first, then the two entry points the playbook runs.
SCRIPT_NAMES = ["common.py", "units.py", "parse.py", "layout.py", "sniff.py", "read_table.py", "audit.py",
                "clean_table.py", "roles.py", "profile_table.py", "blanks.py", "growth.py", "findings.py", "plots.py",
                "plot_table.py", "analyze_table.py", "make_report.py"]


def script_source(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text(encoding="utf-8")
