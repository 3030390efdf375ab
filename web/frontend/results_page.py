"""The results page's model: a finished job's files grouped by table, with a summary on top.

Per table (a folder holding `<table>.profile.json`, as the offline playbook
writes, else a CSV/Parquet file and its siblings of the same name): its
findings, plots, one preview and its downloads, in that order. The profile's
`findings: [{kind, column, rows, detail}]`, `plots: [{kind, columns|column,
path, title}]` and per-column `unit` are used when present; a profile without
them, or no profile at all, still gives a group. Scripts and per-input notes
go to their own folded section; internal working files never appear.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from agent_sandbox.events import Status
from frontend import results as res

PROFILE_SUFFIX = ".profile.json"
MAX_JSON_BYTES = 5 * 1024 * 1024
PREVIEW_ROWS = 50
PARTIAL_NOTE = {Status.CANCELLED: "the job was cancelled", Status.FAILED: "the run failed",
                Status.TIMEOUT: "the run ran out of time", Status.COMMAND_TIMEOUT: "a command ran out of time",
                Status.IDLE_TIMEOUT: "the run stopped printing output", Status.ERROR: "the sandbox failed",
                Status.INTERRUPTED: "the server stopped during the run"}


def build(results: Path, manifest: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    files = [f for f in manifest.get("files", []) if not res.is_internal(f["path"])]
    by_path = {f["path"]: f for f in files}
    used: set[str] = set()
    tables = [_table_from_profile(results, manifest, by_path, p, used)
              for p in sorted(by_path) if p.endswith(PROFILE_SUFFIX)]
    tables += [_table_from_data(results, manifest, by_path, p, used)
               for p in sorted(by_path) if p.lower().endswith(res.TABLE_TYPES) and p not in used
               and not _folded(p)]
    report = res.find_report({"files": files})  # linked from the summary, listed among the other files
    folded = [f for f in files if _folded(f["path"]) and f["path"] not in used]
    used.update(f["path"] for f in folded)
    images = [f for f in files if f["path"].lower().endswith(res.IMAGE_TYPES) and f["path"] not in used]
    used.update(f["path"] for f in images)
    others = [f for f in files if f["path"] not in used]
    inputs = _input_records(results, manifest, by_path)
    findings = [dict(x, table=t["name"]) for t in tables for x in t["findings"]]
    return {
        "tables": tables, "report": report, "images": images, "others": others, "folded": folded,
        "inputs": inputs, "findings": findings, "files": files,
        "skipped": [s for s in manifest.get("skipped", []) if not res.is_internal(s["path"])],
        "partial": PARTIAL_NOTE.get(job["status"]) if job["status"] != Status.SUCCEEDED else None,
        "total_size": sum(f["size"] for f in files),
    }


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


def _table_from_profile(results, manifest, by_path, path, used) -> dict[str, Any]:
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
    table = _group(results, manifest, by_path, str(profile.get("table") or stem), members, plots, profile)
    table["profile_path"] = path
    return table


def _table_from_data(results, manifest, by_path, path, used) -> dict[str, Any]:
    base = posixpath.splitext(path)[0]
    members = [p for p in by_path if posixpath.splitext(p)[0] == base and p not in used]
    used.update(members)
    return _group(results, manifest, by_path, posixpath.basename(base), members, [], {})


def _group(results, manifest, by_path, name, members, plots, profile) -> dict[str, Any]:
    data = [by_path[p] for p in sorted(members) if p.lower().endswith(res.TABLE_TYPES)]
    if not plots:
        plots = [{"path": p, "title": posixpath.basename(p)} for p in sorted(members)
                 if p.lower().endswith(res.IMAGE_TYPES)]
    for plot in plots:
        plot["large"] = bool(by_path[plot["path"]].get("large"))
    columns = {c.get("name"): c for c in profile.get("columns") or [] if isinstance(c, dict)}
    return {
        "name": name, "source": profile.get("source"), "sheet": profile.get("sheet"),
        "rows_before": profile.get("rows_before"), "rows_after": profile.get("rows_after"),
        "columns_before": profile.get("columns_before"), "columns_after": profile.get("columns_after"),
        "notes": [n for n in profile.get("notes") or [] if isinstance(n, str)],
        "findings": [f for f in profile.get("findings") or [] if isinstance(f, dict)],
        "plots": plots,
        "preview": _preview(results, manifest, data, columns),
        # Plots are opened from the gallery; the list holds the data files.
        "downloads": [by_path[p] for p in sorted(members, key=_download_order)
                      if p not in {plot["path"] for plot in plots}],
    }


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
        return {"path": entry["path"], "columns": [], "rows": [], "error": f"cannot preview: {exc}"}
    types = table.get("types") or {}
    table["column_info"] = [_column_info(c, columns.get(c), types.get(c)) for c in table["columns"]]
    table["path"] = entry["path"]
    return table


def _column_info(name: str, profile: dict | None, arrow_type: str | None) -> dict:
    profile = profile or {}
    kind = profile.get("type") or arrow_type or ""
    numeric = kind in ("integer", "number", "float", "double") or any(
        k in (arrow_type or "") for k in ("int", "float", "double", "decimal"))
    return {"name": name, "type": kind, "unit": profile.get("unit") or "", "numeric": numeric}


def _input_records(results, manifest, by_path) -> list[dict]:
    """What happened to each input file (`inputs/<file>.json`, when the agent writes them)."""
    records = []
    for path in sorted(p for p in by_path if p.startswith("inputs/") and p.endswith(".json")):
        data = _load_json(results, manifest, by_path[path])
        if data and data.get("file"):
            records.append({"file": data["file"], "status": data.get("status", ""),
                            "reason": data.get("reason", ""), "tables": data.get("tables") or []})
    return records
