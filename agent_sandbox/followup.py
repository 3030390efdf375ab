"""Follow-up jobs: continue a finished job with a new instruction.

After a run, `manifest.record_run` adds what happened (instructions, model,
status, the agent's summary, token usage, the input files) to the results'
manifest.json under "run". A follow-up is a new job whose workspace holds the
same inputs plus the previous job's results in `previous/` (and, when that one
was a follow-up too, the results of the jobs before it in `previous-2/`,
`previous-3/`, ...), and whose model reads what each of them did from the
workspace's PREVIOUS_SUMMARY file (`previous_summary()` of each record). The
web app and the CLI (`--follow-up DIR`) share this.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_sandbox.manifest import MANIFEST, load_manifest, run_record
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.paths import PREVIOUS_SUMMARY, UnsafePath, safe_join

PREVIOUS = "previous"   # folder of the workspace holding the previous job's results
MAX_LISTED = 40         # result files named in the summary
MAX_CHAIN = 8           # earlier jobs of a chain of follow-ups whose results are carried along
MAX_SUMMARY_CHARS = 50_000   # of one job's summary in the summary file


def previous_summary(results: Path, folder: str = PREVIOUS) -> str:
    """What the previous job did, for the follow-up's model."""
    manifest = load_manifest(results) or {}
    run = run_record(manifest)
    files = [f["path"] for f in manifest.get("files", [])]
    listed = ", ".join(files[:MAX_LISTED]) + (f" and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else "")
    summary = str(run.get('summary') or '(none)')
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[:MAX_SUMMARY_CHARS] + f" [... {len(summary) - MAX_SUMMARY_CHARS:,} characters cut]"
    # Never a host path: the model can open only what is in the sandbox.
    lines = [f"Instructions: {run.get('instructions') or '(none: the standard analysis)'}",
             f"Model: {run.get('model', 'unknown')}; status: {run.get('status', 'unknown')}"
             + (f" ({run['reason']})" if run.get("reason") else ""),
             f"Its summary: {summary}",
             f"Its result files (in /workspace/{folder}/): {listed or '(none)'}"]
    if run.get("previous"):
        lines.append("It was itself a follow-up of an earlier job.")
    return "\n".join(lines)


def results_path(previous: str) -> Path | None:
    """Where a run record's "previous" (the CLI records the results folder) is, if it says."""
    return Path(previous) if os.path.isabs(previous) else None


def add_previous(workspace: Path, results: Path, resolve: Callable[[str], Path | None] = results_path) -> str:
    """Copy the files a previous job brought back into `workspace/previous/` (or previous_2, ...
    if an input has that name), and those of the jobs it continued (each record's "previous",
    which `resolve` turns into a results folder) into previous-2/, previous-3/, ...; write what
    each did to the workspace's PREVIOUS_SUMMARY. Returns the previous job's folder."""
    if load_manifest(results) is None:
        raise FileNotFoundError(f"{results} holds no results (no {MANIFEST})")
    sections, folders, seen, current = [], [], set(), Path(results)
    while current is not None and len(folders) < MAX_CHAIN and current.resolve() not in seen:
        seen.add(current.resolve())
        manifest = load_manifest(current)
        if manifest is None:
            break
        back = len(folders) + 1
        folders.append(copy_results(workspace, current, manifest, PREVIOUS if back == 1 else f"{PREVIOUS}-{back}"))
        title = "The job this one continues" if back == 1 else f"The job before that ({back} back)"
        sections.append(f"## {title}\n{previous_summary(current, folders[-1])}")
        previous = run_record(manifest).get("previous")
        try:
            current = resolve(str(previous)) if previous else None
        except (ValueError, OSError):   # a record naming nothing this host can find
            current = None
    (Path(workspace) / PREVIOUS_SUMMARY).write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return folders[0]


def copy_results(workspace: Path, results: Path, manifest: dict[str, Any], name: str) -> str:
    """Copy the files `manifest` lists (regular files only) from `results` into a new folder
    `name` of the workspace (name_2, ... if taken); its name."""
    folder, n = name, 1
    while (Path(workspace) / folder).exists():
        n += 1
        folder = f"{name}_{n}"
    dest_root = Path(workspace) / folder
    dest_root.mkdir(parents=True)
    source = DirectorySource(Path(results))
    for record in manifest.get("files", []):
        try:
            dest = safe_join(dest_root, record["path"])
            with source.open(record["path"]) as src:   # never follows a link
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "xb") as out:
                    shutil.copyfileobj(src, out)
        except (OSError, UnsafePath, KeyError):
            continue   # a result that went missing is simply not carried over
    return folder


def copy_inputs(source: Path, dest: Path, skip: str = "") -> None:
    """A previous job's workspace (its inputs) into a new one; links, `skip` (and with it the
    rest of a chain of follow-ups, `skip`-2, ...) and the summary file left out."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        rel = Path(dirpath).relative_to(source)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if not skip or not re.fullmatch(rf"{re.escape(skip)}(-\d+)?", d)]
            filenames = [f for f in filenames if f != PREVIOUS_SUMMARY]
        for name in filenames:
            src = Path(dirpath, name)
            if not stat.S_ISREG(os.lstat(src).st_mode):
                continue
            target = Path(dest, rel, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target, follow_symlinks=False)
