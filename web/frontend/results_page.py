"""The results page's model: a finished job's files grouped by table, with a summary on top.

Per table (a folder holding `<table>.profile.json`, as the offline playbook
writes, else a CSV/Parquet file and its siblings of the same name): its
findings, plots, one preview and its downloads, in that order. The profile's
`findings: [{kind, column, rows, detail}]`, `plots: [{kind, columns|column,
path, title}]` and per-column `unit` are used when present; a profile without
them, or no profile at all, still gives a group. Scripts and per-input notes
go to their own folded section; internal working files never appear.

Findings are ranked across tables by the profile's `rank` (instrument problems
first), or by their kind in the playbook's order when a profile has no ranks.
Texts written for the command line are put in plain words (`plain`).
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any

from agent_sandbox.events import Status
from frontend import results as res
from frontend import tables as tbl

PROFILE_SUFFIX = ".profile.json"
MAX_JSON_BYTES = 5 * 1024 * 1024
PREVIEW_ROWS = 20
SHOWN_FINDINGS = 8
# The playbook's ranking of finding kinds (most important first), for profiles without `rank`.
KIND_ORDER = ["saturated", "negative_values", "no_growth", "blank_signal", "below_blank", "below_detection",
              "replicate_cv", "duplicate_rows", "missing_times", "outliers", "missing_together",
              "mostly_missing", "constant_column", "long_tail", "blanks"]
INSTRUMENT_KINDS = set(KIND_ORDER[:6])
INFO_KINDS = {"long_tail", "blanks"}
SEVERITY_WORDS = {"instrument": "instrument", "data": "data", "info": "note"}
# Words meant for the command line, as a scientist reads them on the page.
PLAIN_WORDS = [
    (re.compile(r"--drop-duplicates \(or asking to remove duplicates\)"), "the option “Remove identical rows”"),
    (re.compile(r" \(--drop-duplicates\)"), ""),
    (re.compile(r"--drop-duplicates"), "the option “Remove identical rows”"),
    (re.compile(r"\(HyperLogLog over every row"), "(estimated over every row"),
    (re.compile(r"HyperLogLog"), "an estimate"),
    (re.compile(r"/workspace/previous(_\d+)?/"), "the previous job's results/"),
    (re.compile(r"(?<![\w.])/(workspace|outputs)/"), ""),
]
PARTIAL_NOTE = {Status.CANCELLED: "the job was cancelled", Status.FAILED: "the run failed",
                Status.TIMEOUT: "the run ran out of time", Status.COMMAND_TIMEOUT: "a command ran out of time",
                Status.IDLE_TIMEOUT: "the run stopped printing output", Status.ERROR: "the sandbox failed",
                Status.INTERRUPTED: "the server stopped during the run"}


def plain(text: Any) -> str:
    """A text of the agent's (a finding, a note, a reason) without option names and internal paths."""
    text = str(text or "")
    for pattern, words in PLAIN_WORDS:
        text = pattern.sub(words, text)
    return text


def build(results: Path, manifest: dict[str, Any], job: dict[str, Any], previews: bool = True) -> dict[str, Any]:
    """The results page's model; `previews=False` leaves out the table previews (no table is read)."""
    files = [f for f in manifest.get("files", []) if not res.is_internal(f["path"])]
    by_path = {f["path"]: f for f in files}
    explore = {path: name for name, path in tbl.find_tables(list(by_path)).items()}
    used: set[str] = set()
    group = lambda make, p: make(results, manifest, by_path, p, used, previews)  # noqa: E731
    tables = [group(_table_from_profile, p) for p in sorted(by_path) if p.endswith(PROFILE_SUFFIX)]
    tables += [group(_table_from_data, p) for p in sorted(by_path)
               if p.lower().endswith(res.TABLE_TYPES) and p not in used and not _folded(p)]
    for t in tables:
        t["explore"] = next((explore[d["path"]] for d in t["downloads"] if d["path"] in explore), None)
    report = res.find_report({"files": files})  # linked from the summary, listed among the other files
    folded = [f for f in files if _folded(f["path"]) and f["path"] not in used]
    used.update(f["path"] for f in folded)
    images = [f for f in files if f["path"].lower().endswith(res.IMAGE_TYPES) and f["path"] not in used]
    used.update(f["path"] for f in images)
    shown = set(_without_svg_twins([f["path"] for f in images]))
    images = [f for f in images if f["path"] in shown]   # a plot's SVG version is offered by its viewer
    others = [f for f in files if f["path"] not in used]
    inputs = _input_records(results, manifest, by_path)
    findings = ranked([dict(x, table=t["name"]) for t in tables for x in t["findings"]])
    plots = [dict(p, table=t["name"]) for t in tables for p in t["plots"]]
    plots += [{"path": f["path"], "title": posixpath.basename(f["path"]), "large": bool(f.get("large")),
               "table": None} for f in images]
    ended_badly = job["status"] != Status.SUCCEEDED
    return {
        "tables": tables, "report": report, "images": images, "others": others, "folded": folded,
        "inputs": inputs, "findings": findings, "files": files, "plots": plots,
        "skipped": [s for s in manifest.get("skipped", []) if not res.is_internal(s["path"])],
        # A run that ended badly with tables made has partial results; without any, it has none.
        "partial": PARTIAL_NOTE.get(job["status"]) if ended_badly and tables else None,
        "no_table": ended_badly and not tables,
        "total_size": sum(f["size"] for f in files),
    }


def ranked(findings: list[dict]) -> list[dict]:
    """Findings of every table, most important first: by `rank` (the playbook's), else by kind;
    each gets its `severity` and plain words."""
    for n, f in enumerate(findings):
        kind = str(f.get("kind") or "")
        rank = f.get("rank")
        fallback = (KIND_ORDER.index(kind) + 1) * 100 if kind in KIND_ORDER else 10_000
        f["order"] = (rank if isinstance(rank, (int, float)) else fallback, n)
        f["severity"] = f.get("severity") if f.get("severity") in SEVERITY_WORDS else (
            "instrument" if kind in INSTRUMENT_KINDS else "info" if kind in INFO_KINDS else "data")
        f["severity_word"] = SEVERITY_WORDS[f["severity"]]
        f["kind_words"] = kind.replace("_", " ")
        f["detail"] = plain(f.get("detail"))
        f["count"] = _count(f)
    return sorted(findings, key=lambda f: f["order"])


def _count(finding: dict) -> int | None:
    """How many rows (or wells, ...) a finding is about: `count`, else the length of its `rows`."""
    count, rows = finding.get("count"), finding.get("rows")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    if isinstance(rows, list):
        return len(rows)
    return rows if isinstance(rows, int) and not isinstance(rows, bool) else None


def _folded(path: str) -> bool:
    return path.split("/")[0] in ("scripts", "inputs")


def _load_json(results: Path, manifest: dict, entry: dict) -> dict | None:
    if entry["size"] > MAX_JSON_BYTES:
        return None
    full = res.listed_file(results, manifest, entry["path"])
    try:
        data = json.loads(full.read_text(encoding="utf-8")) if full else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _table_from_profile(results, manifest, by_path, path, used, previews=True) -> dict[str, Any]:
    profile = _load_json(results, manifest, by_path[path]) or {}
    folder = posixpath.dirname(path)
    stem = posixpath.basename(path)[: -len(PROFILE_SUFFIX)]
    if folder:
        members = [p for p in by_path if p.startswith(folder + "/")]
    else:
        members = [p for p in by_path if posixpath.basename(p).startswith(stem + ".")]
    plots = _plots(profile, by_path, members)
    members += [p["path"] for p in plots if p["path"] not in members]
    used.update(members)
    table = _group(results, manifest, by_path, str(profile.get("table") or stem), members, plots, profile, previews)
    table["profile_path"] = path
    return table


def _table_from_data(results, manifest, by_path, path, used, previews=True) -> dict[str, Any]:
    base = posixpath.splitext(path)[0]
    members = [p for p in by_path if posixpath.splitext(p)[0] == base and p not in used]
    used.update(members)
    return _group(results, manifest, by_path, posixpath.basename(base), members, [], {}, previews)


def _group(results, manifest, by_path, name, members, plots, profile, previews=True) -> dict[str, Any]:
    data = [by_path[p] for p in sorted(members) if p.lower().endswith(res.TABLE_TYPES)]
    if not plots:
        plots = [{"path": p, "title": posixpath.basename(p)}
                 for p in _without_svg_twins(sorted(p for p in members if p.lower().endswith(res.IMAGE_TYPES)))]
    for plot in plots:
        plot["large"] = bool(by_path[plot["path"]].get("large"))
    columns = {c.get("name"): c for c in profile.get("columns") or [] if isinstance(c, dict)}
    return {
        "name": name, "source": profile.get("source"), "sheet": profile.get("sheet"),
        "rows_before": profile.get("rows_before"), "rows_after": profile.get("rows_after"),
        "columns_before": profile.get("columns_before"), "columns_after": profile.get("columns_after"),
        "notes": [plain(n) for n in profile.get("notes") or [] if isinstance(n, str)],
        "findings": ranked([f for f in profile.get("findings") or [] if isinstance(f, dict)]),
        "plots": plots,
        "preview": _preview(results, manifest, data, columns) if previews else None,
        # Plots are opened from the gallery; the list holds the data files.
        "downloads": [by_path[p] for p in sorted(members, key=_download_order)
                      if p not in {plot["path"] for plot in plots}],
    }


def _without_svg_twins(paths: list[str]) -> list[str]:
    """Image paths less the SVG versions of plots also drawn as PNG (one plot, two downloads)."""
    raster = {posixpath.splitext(p)[0] for p in paths if not p.lower().endswith(".svg")}
    return [p for p in paths if not (p.lower().endswith(".svg") and posixpath.splitext(p)[0] in raster)]


def _plots(profile: dict, by_path: dict, members: list[str]) -> list[dict]:
    plots = []
    for p in profile.get("plots") or []:
        if not isinstance(p, dict) or p.get("path") not in by_path:
            continue
        columns = p.get("columns") or ([p["column"]] if p.get("column") else [])
        title = p.get("title") or " ".join(filter(None, [str(p.get("kind") or "plot"), "of", ", ".join(columns)]))
        plots.append({"path": p["path"], "title": title, "kind": p.get("kind"), "columns": columns})
    return plots


def _download_order(path: str) -> tuple:
    ext = path.lower().rsplit(".", 1)[-1]
    order = {"csv": 0, "parquet": 1, "tsv": 0, "json": 3}
    return (order.get(ext, 2 if not path.lower().endswith(res.IMAGE_TYPES) else 4), path)


def _preview(results, manifest, data: list[dict], columns: dict) -> dict | None:
    """One preview per table: the Parquet file when there is one (it knows its types)."""
    if not data:
        return None
    entry = sorted(data, key=lambda f: not f["path"].lower().endswith(".parquet"))[0]
    full = res.listed_file(results, manifest, entry["path"])
    try:
        table = res.preview_table(full, PREVIEW_ROWS)
    except Exception as exc:  # a malformed table is shown as such, not a crash
        return {"path": entry["path"], "columns": [], "rows": [], "error": f"cannot preview: {_first_line(exc)}"}
    types = table.get("types") or {}
    table["column_info"] = [_column_info(c, columns.get(c), types.get(c)) for c in table["columns"]]
    table["path"] = entry["path"]
    return table


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _column_info(name: str, profile: dict | None, sql_type: str | None) -> dict:
    profile = profile or {}
    kind = profile.get("type") or tbl.kind_of(sql_type or "")
    numeric = kind in ("integer", "number", "float", "double") or tbl.is_numeric(sql_type or "")
    return {"name": name, "type": kind, "unit": profile.get("unit") or "", "numeric": numeric}


def _input_records(results, manifest, by_path) -> list[dict]:
    """What happened to each input file (`inputs/<file>.json`, when the agent writes them)."""
    records = []
    for path in sorted(p for p in by_path if p.startswith("inputs/") and p.endswith(".json")):
        data = _load_json(results, manifest, by_path[path])
        if data and data.get("file"):
            records.append({"file": data["file"], "status": data.get("status", ""),
                            "reason": plain(data.get("reason", "")), "tables": data.get("tables") or []})
    return records
