"""A new job, however it is asked for: uploads (POST /api/jobs), a rerun, a follow-up, the sample.

`submit_job(fields, fill)` is the one way a job is made: the server's
allow-lists as they are now, the admission caps, a new id, the workspace
filled by `fill` plus `my_files/` (nothing left behind when anything fails:
agent_sandbox.workspace.fill_workspace), its limits cut to what the owner's
storage quota leaves, the job queued.
The run itself is agent_sandbox.jobs, driven by the executor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import current_app
from werkzeug.exceptions import BadRequest, HTTPException

from agent_sandbox.jobs import new_job_id
from agent_sandbox.workspace import fill_workspace, job_workspace, remove_workspace
from frontend.identity import client_address, job_owner
from frontend.storage import disk_bytes, storage


class TooManyJobs(HTTPException):
    code = 429
    description = "too many jobs"


def submit_job(fields: dict[str, Any], fill: Callable[[Path], list[dict]]) -> dict[str, Any]:
    """Queue a job whose workspace `fill(workspace)` prepares (returns the files' [{name, size}];
    it may add to `fields`, as a follow-up adds its summary). Raises TooManyJobs (429)."""
    s = current_app.config["SETTINGS"]
    executor = current_app.extensions["jobs"].executor
    check_allowed(fields["backend"], fields["model"])
    owner, address = job_owner(), client_address()
    if reason := executor.admission_error(owner, address):
        raise TooManyJobs(reason)
    job_id = new_job_id()
    workspace = job_workspace(s.data_dir, job_id)
    notes: list[str] = []
    files = fill_workspace(workspace, fill, s.my_files, notes)
    try:
        limits = storage().job_limits(owner, disk_bytes(workspace))   # results cut to what the quota leaves
        job = executor.submit({**fields, "id": job_id, "owner": owner, "address": address, "files": files,
                               "limits": limits}, notes)
    except BaseException:
        remove_workspace(workspace)
        raise
    if job is None:
        remove_workspace(workspace)
        raise TooManyJobs(executor.admission_error(owner, address) or "too many jobs; try again shortly")
    return job


def check_allowed(backend: str, model: str) -> None:
    """The server's allow-lists as they are now: a job run again, or followed up, may have been
    made when the operator allowed more."""
    s = current_app.config["SETTINGS"]
    if backend not in s.backends:
        raise BadRequest(f"backend {backend!r} is not allowed here any more; this server runs {', '.join(s.backends)}")
    if model not in s.models:
        raise BadRequest(f"model {model!r} is not allowed here any more; choose one of {', '.join(s.models)}")
