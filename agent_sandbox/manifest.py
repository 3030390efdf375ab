"""A results folder's `manifest.json`: what came back, and the record of the run.

    {"files":   [{"path", "size", "sha256", "large"?}, ...],
     "skipped": [{"path", "size", "reason"}, ...],
     "run":     {"status", "reason", "backend", "sandbox_id",
                 "instructions", "model", "summary", "usage", "inputs", "previous"}}

The one place that reads and writes it. The backends' output collection writes
the files and how the run ended (`write_manifest`); a CLI run marks the folder
"running" with its sandbox id as soon as the sandbox exists (`mark_running`),
so a folder left by a killed CLI tells which sandbox to end; at the end
`record_run` adds what a follow-up is told (instructions, model, summary, ...).
Follow-ups, the CLI and the web app read it with `load_manifest`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def empty() -> dict[str, Any]:
    return {"files": [], "skipped": []}


def load_manifest(results: Path) -> dict[str, Any] | None:
    """The manifest of a results folder; None when there is none (or it is not one)."""
    try:
        manifest = json.loads((Path(results) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(results: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json whole or not at all (a reader never sees half of it)."""
    tmp = Path(results) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    tmp.replace(Path(results) / MANIFEST)


def run_record(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's "run" ({} without one)."""
    run = (manifest or {}).get("run")
    return run if isinstance(run, dict) else {}


def mark_running(results: Path, backend: str, sandbox_id: str) -> None:
    """A manifest with no files yet, saying which sandbox runs (replaced when it ends)."""
    Path(results).mkdir(parents=True, exist_ok=True)
    write_manifest(results, {**empty(), "run": {"status": "running", "reason": "", "backend": backend,
                                       "sandbox_id": sandbox_id}})


def record_run(results: Path, run: dict[str, Any], create: bool = False) -> None:
    """Add `run` to the manifest's "run" (on top of what the backend recorded there).
    Without a manifest nothing is written unless `create` says to start one."""
    manifest = load_manifest(results)
    if manifest is None and not create:
        return
    manifest = manifest or empty()
    manifest["run"] = {**run_record(manifest), **run}
    Path(results).mkdir(parents=True, exist_ok=True)
    write_manifest(results, manifest)
