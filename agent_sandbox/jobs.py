"""One path from a request to a run, for the CLI and the web app alike.

    workspace = job_workspace(root, job_id)
    files = fill_workspace(workspace, lambda ws: add_files(ws, paths), my_files, notes)  # or uploads...
    job = Job(id=job_id, workspace=workspace, results=out, model="offline", backend="local")
    result = run_job(job, on_event, cancel)

The workspace is made with agent_sandbox.workspace (`fill_workspace`: the
job's own files, then `my_files/`; nothing left behind when it fails), a
follow-up's previous results added with `continue_from`. `run_job` builds the spec (the model's endpoint and key stay in
this process for the relay; the agent's model settings pass through from this
process's environment), runs it on the job's backend, reports the sandbox's id
as soon as there is one (`on_sandbox`, and `mark_running` writes it into the
results folder), and records the run in the manifest for a follow-up.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.backends.contract import Backend, EventCallback
from agent_sandbox.followup import add_previous, previous_summary, results_path
from agent_sandbox.manifest import mark_running, record_run
from agent_sandbox.relay.host import ModelAccess
from agent_sandbox.spec import Limits, RunResult, RunSpec


@dataclass
class Job:
    """A request for one run, whoever made it."""

    id: str
    workspace: Path                       # prepared (fill_workspace); removed by whoever made it
    results: Path
    backend: str = "local"
    model: str = "offline"
    instructions: str = ""
    env: dict[str, str] = field(default_factory=dict)   # the job's own settings for the agent (never keys)
    limits: Limits = field(default_factory=Limits)
    network: bool = False
    previous_summary: str = ""            # a follow-up's: what the job it continues did
    record: dict[str, Any] = field(default_factory=dict)  # more for the manifest's "run" (inputs, previous)


def new_job_id() -> str:
    return secrets.token_urlsafe(16)


def continue_from(workspace: Path, results: Path,
                  resolve: Callable[[str], Path | None] = results_path) -> str:
    """A follow-up: the previous job's results into the workspace (and those of the jobs it
    continued, each record's "previous" turned into a results folder by `resolve`); what its
    model is told."""
    return previous_summary(results, add_previous(workspace, results, resolve))


# -- the run ------------------------------------------------------------------------

def build_spec(job: Job) -> RunSpec:
    """The run of `job`; the model's settings are its Limits, and its key stays in this
    process (the sandbox reaches the model through the relay)."""
    return RunSpec(job_id=job.id, workspace=job.workspace, results=job.results, instructions=job.instructions,
                   model=job.model, env=dict(job.env), limits=job.limits, network=job.network,
                   model_access=ModelAccess.from_env(job.model, dict(os.environ)),
                   previous_summary=job.previous_summary)


def run_job(job: Job, on_event: EventCallback, cancel=None, *, backend: Backend | None = None,
            on_sandbox: Callable[[str], None] | None = None, mark: bool = False) -> RunResult:
    """Run `job` on its backend. `on_sandbox(id)` hears the sandbox's id before any event
    says it (whoever stores it can end the sandbox if this process dies); with `mark` the
    results folder says "running" with it until the run ends. The run is recorded in the
    manifest for a follow-up."""
    spec, hook, marked = _started(job, on_event, on_sandbox, mark)
    return _recorded(job, marked, (backend or get_backend(job.backend)).run(spec, hook, cancel))


def submit_job(job: Job, on_event: EventCallback, cancel=None, *, backend: Backend | None = None,
               on_sandbox: Callable[[str], None] | None = None,
               mark: bool = False) -> concurrent.futures.Future[RunResult] | None:
    """`run_job` without holding the caller's thread, where the backend can run so (Modal's
    runner): a future of the result, recorded as run_job records it; None where it cannot."""
    spec, hook, marked = _started(job, on_event, on_sandbox, mark)
    running = (backend or get_backend(job.backend)).submit(spec, hook, cancel)
    if running is None:
        return None
    done: concurrent.futures.Future[RunResult] = concurrent.futures.Future()

    def ended(future: concurrent.futures.Future) -> None:
        try:
            done.set_result(_recorded(job, marked, future.result()))
        except BaseException as exc:
            done.set_exception(exc)

    running.add_done_callback(ended)
    return done


def _started(job: Job, on_event: EventCallback, on_sandbox: Callable[[str], None] | None,
             mark: bool) -> tuple[RunSpec, EventCallback, list[str]]:
    """A run's spec, and its event hook (the sandbox's id heard first)."""
    marked: list[str] = []

    def hook(event: dict[str, Any]) -> None:
        sandbox_id = event["data"].get("sandbox_id") if event["type"] == ev.STATUS else None
        if sandbox_id:
            if on_sandbox is not None:
                on_sandbox(sandbox_id)
            if mark:
                mark_running(job.results, job.backend, sandbox_id)
                marked.append(sandbox_id)
        on_event(event)

    return build_spec(job), hook, marked


def _recorded(job: Job, marked: list[str], result: RunResult) -> RunResult:
    """The run recorded in the manifest for a follow-up."""
    if marked and "run" not in result.manifest:   # it ended before any output was collected
        record_run(job.results, {"status": str(result.status), "reason": result.reason, "backend": job.backend,
                                 "sandbox_id": result.sandbox_id}, create=True)
    record_run(job.results, {"instructions": job.instructions, "model": job.model, "status": result.status,
                             "reason": result.reason, "summary": result.summary, "usage": result.usage,
                             **job.record})
    return result
