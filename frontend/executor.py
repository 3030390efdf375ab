"""JobExecutor: a bounded pool of threads that run queued jobs through a backend.

At most `settings.workers` sandboxes run at once; other jobs wait in a FIFO
queue (their position is shown). Admission caps (queued+running, globally and
per owner) are checked by the API before a job is created. Every event the
backend reports is stored under the job's next sequence number, then the feed
hub is told so live viewers see it at once.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from typing import Any, Callable

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.spec import Limits, RunSpec
from agent_sandbox.workspace import job_workspace
from frontend.feed import FeedHub
from frontend.settings import Settings
from frontend.store import INTERRUPTED, QUEUED, RUNNING, JobStore

# API keys handed to the model inside the sandbox as secrets (never logged).
MODEL_SECRETS = {"openai": ("OPENAI_API_KEY",), "anthropic": ("ANTHROPIC_API_KEY",)}
MODEL_ENV = {"openai": ("OPENAI_BASE_URL",), "anthropic": ("ANTHROPIC_BASE_URL",)}


class JobExecutor:
    def __init__(self, settings: Settings, store: JobStore, hub: FeedHub,
                 backend_factory: Callable[[str], Any] = get_backend):
        self.settings = settings
        self.store = store
        self.hub = hub
        self.backend_factory = backend_factory
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
                         for i in range(settings.workers)]

    def start(self) -> None:
        self.recover()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    # -- admission and control ---------------------------------------------

    def admission_error(self, owner: str) -> str | None:
        """Why a new job from `owner` must wait (429), or None."""
        if self.store.count_active(owner) >= self.settings.max_active_per_owner:
            return (f"you already have {self.settings.max_active_per_owner} jobs queued or running; "
                    "wait for one to finish")
        if self.store.count_active() >= self.settings.max_active_jobs:
            return "the server is at its limit of queued and running jobs; try again shortly"
        return None

    def submit(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Create and enqueue a job, unless a cap is reached (then None)."""
        with self._lock:  # check-and-create as one step so concurrent submits respect the caps
            if self.admission_error(job["owner"]):
                return None
            job = self.store.create_job(job)
            self.emit(job["id"], ev.make_event(ev.STATUS, {"status": QUEUED,
                                                           "message": "waiting for a free sandbox"}))
        self._queue.put(job["id"])
        return job

    def cancel(self, job_id: str) -> None:
        with self._lock:
            if self.store.update_job(job_id, only_if_status=(QUEUED,), status=ev.CANCELLED,
                                     finished=time.time(), reason="cancelled before it started"):
                self.emit(job_id, ev.make_event(ev.STATUS, {"status": ev.CANCELLED,
                                                            "message": "cancelled before it started"}))
                return
            flag = self._cancels.get(job_id)
        if flag is not None:
            flag.set()  # the backend stops the sandbox; the run ends as "cancelled"

    def emit(self, job_id: str, event: dict[str, Any]) -> int:
        seq = self.store.append_event(job_id, event)
        self.hub.notify(job_id)
        return seq

    def recover(self) -> None:
        """After a restart: running jobs are interrupted (their sandboxes swept), queued ones re-run."""
        interrupted = self.store.jobs_with_status(RUNNING)
        for job in interrupted:
            message = "the server restarted while this job was running; it was stopped"
            self.emit(job["id"], ev.make_event(ev.ERROR, {"message": message}))
            self.emit(job["id"], ev.make_event(ev.STATUS, {"status": INTERRUPTED, "message": message}))
            self.store.update_job(job["id"], status=INTERRUPTED, finished=time.time(),
                                  reason=message, error=message)
        for name in {j["backend"] for j in interrupted} | {self.settings.default_backend}:
            try:
                self.backend_factory(name).sweep_orphans()
            except Exception as exc:  # a backend that cannot load must not stop the app
                print(f"sweep_orphans({name}) failed: {exc!r}", flush=True)
        for job in self.store.jobs_with_status(QUEUED):
            self._queue.put(job["id"])

    # -- running ------------------------------------------------------------

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                self._run(job_id)
            except Exception:  # never lose a worker thread
                traceback.print_exc()

    def _run(self, job_id: str) -> None:
        cancel = threading.Event()
        with self._lock:
            if not self.store.update_job(job_id, only_if_status=(QUEUED,), status=RUNNING,
                                         started=time.time()):
                return  # cancelled while queued
            self._cancels[job_id] = cancel
        job = self.store.get_job(job_id)
        self.emit(job_id, ev.make_event(ev.STATUS, {"status": RUNNING,
                                                    "message": "a worker picked up the job"}))
        status, reason, exit_code, error = ev.ERROR_STATUS, "", None, ""
        try:
            spec = self.build_spec(job)
            result = self.backend_factory(job["backend"]).run(spec, lambda e: self.emit(job_id, e), cancel)
            status, reason, exit_code = result.status, result.reason, result.exit_code
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            reason = "the sandbox could not be run"
            self.emit(job_id, ev.make_event(ev.ERROR, {"message": f"{reason}: {error}"}))
            traceback.print_exc()
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)
        if status not in ev.FINAL_STATUSES:
            status = ev.ERROR_STATUS
        # The final status is written last: a viewer that sees it has every event.
        self.emit(job_id, ev.make_event(ev.STATUS, {"status": status, "message": reason}))
        self.store.update_job(job_id, status=status, reason=reason, exit_code=exit_code,
                              error=error, finished=time.time())
        self.hub.notify(job_id)

    def build_spec(self, job: dict[str, Any]) -> RunSpec:
        prefix = job["model"].partition(":")[0]
        secrets = {k: os.environ[k] for k in MODEL_SECRETS.get(prefix, ()) if os.environ.get(k)}
        env = {k: os.environ[k] for k in MODEL_ENV.get(prefix, ()) if os.environ.get(k)}
        env.update(job["env"])
        limits = Limits(**job["limits"]) if job["limits"] else self.settings.limits
        return RunSpec(job_id=job["id"], workspace=job_workspace(self.settings.outputs, job["id"]),
                       results=self.settings.results_dir(job["id"]), instructions=job["instructions"],
                       model=job["model"], secrets=secrets, env=env, limits=limits)

