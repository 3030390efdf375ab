"""Follow-up jobs: continue a finished job with a new instruction.

After a run, `manifest.record_run` adds what happened (instructions, model,
status, the agent's summary, token usage, the input files) to the results'
manifest.json under "run". A follow-up is a new job whose workspace holds the
same inputs plus the previous job's results in `previous/`, and whose model
gets `previous_summary()` of that record. The web app and the CLI
(`--follow-up DIR`) share this.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from agent_sandbox.manifest import MANIFEST, load_manifest, run_record
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.paths import UnsafePath, safe_join

PREVIOUS = "previous"   # folder of the workspace holding the previous job's results
MAX_LISTED = 40         # result files named in the summary


def previous_summary(results: Path, folder: str = PREVIOUS) -> str:
    """What the previous job did, for the follow-up's model."""
    manifest = load_manifest(results) or {}
    run = run_record(manifest)
    files = [f["path"] for f in manifest.get("files", [])]
    listed = ", ".join(files[:MAX_LISTED]) + (f" and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else "")
    lines = [f"Instructions: {run.get('instructions') or '(none: the standard analysis)'}",
             f"Model: {run.get('model', 'unknown')}; status: {run.get('status', 'unknown')}"
             + (f" ({run['reason']})" if run.get("reason") else ""),
             f"Its summary: {run.get('summary') or '(none)'}",
             f"Its result files (in /workspace/{folder}/): {listed or '(none)'}"]
    if run.get("previous"):
        lines.append(f"It was itself a follow-up of: {run['previous']}")
    return "\n".join(lines)


def add_previous(workspace: Path, results: Path) -> str:
    """Copy the files a previous job brought back (those its manifest lists, regular files
    only) into `workspace/previous/` (or previous_2, ... if an input has that name).
    Returns the folder's name."""
    manifest = load_manifest(results)
    if manifest is None:
        raise FileNotFoundError(f"{results} holds no results (no {MANIFEST})")
    folder, n = PREVIOUS, 1
    while (Path(workspace) / folder).exists():
        n += 1
        folder = f"{PREVIOUS}_{n}"
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
    """A previous job's workspace (its inputs) into a new one; links and `skip` left out."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        rel = Path(dirpath).relative_to(source)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d != skip]
        for name in filenames:
            src = Path(dirpath, name)
            if not stat.S_ISREG(os.lstat(src).st_mode):
                continue
            target = Path(dest, rel, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target, follow_symlinks=False)
