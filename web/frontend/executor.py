"""JobExecutor: a bounded pool of threads that run queued jobs through a backend.

At most `settings.workers` sandboxes run at once; other jobs wait, oldest
first (their position is shown). The queue is the jobs table itself: workers
claim the oldest queued job in a transaction, so a job submitted (or a cancel
asked for) through any process sharing the database is seen by the
runners. Admission caps (queued+running, globally, per owner
and per client address of anonymous visitors) are checked in the same
transaction that creates a job. Every event the backend reports is stored
under the job's next sequence number, then the feed hub is told so live
viewers see it at once.

Any number of runner processes, on any number of hosts, share one database:
each job a worker claims runs under its own lease (lease.py), renewed at each
heartbeat of this runner. At each heartbeat the runner also takes over the
jobs of runners that are gone or whose leases expired, and records them
interrupted; it writes nothing more about a job of its own once its lease
has gone to another runner (which records that job's end).

Stopping (SIGTERM) means stopping: no worker starts a sandbox once `stop()`
began (a job claimed meanwhile goes back to the queue); queued jobs stay
queued and are told so; every running sandbox is stopped, and one that has
not ended in time is ended by its id; each of their jobs is recorded
`interrupted` (or `cancelled`, if a cancel came first) before `stop()` returns.
Each run's sandbox id (reported in a status event) is stored with its job,
so after a crash the runner that takes a job over (`recover()`) ends its
sandbox by id, lets the backend sweep what dead processes left, and marks the
job interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.events import Status
from agent_sandbox.jobs import Job, run_job, submit_job
from agent_sandbox.spec import Limits
from agent_sandbox.workspace import job_workspace
from frontend.eventcap import EventBudget
from frontend.feed import FeedHub
from frontend.lease import JobLeases
from frontend.settings import Settings
from frontend.store import ANONYMOUS, QUEUE, JobStore

log = logging.getLogger(__name__)
RECHECK_SECONDS = 0.2   # a queued job was there but its row was held: claim again this soon
STAYS_QUEUED = "the server is stopping: this job stays queued and runs when the server is back"


class JobExecutor:
    def __init__(self, settings: Settings, store: JobStore, hub: FeedHub,
                 backend_factory: Callable[[str], Any] = get_backend):
        self.settings = settings
        self.store = store
        self.hub = hub
        self.backend_factory = backend_factory
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._started = False
        self._cancels: dict[str, threading.Event] = {}     # running here: job id -> its cancel flag
        self._sandboxes: dict[str, tuple[str, str]] = {}   # running here: job id -> (backend, sandbox id)
        self._recorded: set[str] = set()                   # running here, and their end is written
        # Ended here, but the database refused their end (a full disk): written again each lease beat.
        self._unwritten: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.leases = JobLeases(store, settings.runner_lease_seconds, on_lost=self._leases_lost)
        # Workers are started as jobs need them: a job that holds its thread (local, Docker) leaves
        # one free to claim the next; a Modal job is handed to the Modal runner and holds none.
        self._workers = [threading.Thread(target=self._work, name="job-worker-0", daemon=True)]
        self._busy = 0   # workers holding a job
        self._threads = [*self._workers,
                         threading.Thread(target=self._keep_leases, name="job-leases", daemon=True),
                         threading.Thread(target=self._watch_cancels, name="cancel-watch", daemon=True)]

    def start(self) -> None:
        """Run jobs in this process, alongside any other runners of the database (see lease.py):
        first the jobs that runners which are gone left running are recovered."""
        threading.Thread(target=self.prepare_backends, name="backend-prepare", daemon=True).start()
        self.leases.beat()   # counted among the live runners from now on
        self.recover(sweep=True)
        self.store.on_notice(QUEUE, lambda job_id: self._wake.set())  # PostgreSQL: a job queued anywhere
        self._started = True
        for t in self._threads:
            t.start()

    def role(self) -> str:
        """What this process does with jobs, for the start-up line."""
        others = len(self.leases.others())
        if self._started:
            return f"runs jobs as runner {self.leases.holder} ({others} other runner(s) on this database)"
        if others:
            return f"runs no jobs: {others} runner(s) run the jobs of this database"
        return ("runs no jobs, and no runner runs the jobs of this database yet: start one "
                "(python -m frontend --role runner)")

    def _keep_leases(self) -> None:
        while not self._stopping.wait(self.leases.interval):
            try:
                self.leases.beat()
                self._write_unwritten_ends()
                self.recover()
            except Exception:  # the database is busy or gone for a moment: try again next time
                log.exception("job leases: could not reach the database")

    def _leases_lost(self, job_ids: set[str]) -> None:
        """Jobs of ours another runner took over (our heartbeat came too late): stop them; the
        runner that took them over records their end."""
        with self._lock:
            lost = [job_id for job_id in job_ids if job_id in self._cancels and job_id not in self._recorded]
            for job_id in job_ids:
                self._unwritten.pop(job_id, None)
            for job_id in lost:
                self._cancels[job_id].set()
        for job_id in lost:
            log.error("job %s: this runner lost its lease (its heartbeat came too late and another runner "
                      "took the job over); it stops the job, which the other runner records as interrupted",
                      job_id)

    def _ours(self, job_id: str) -> bool:
        """May this process still write about a job it runs? (Not once its lease has gone.)"""
        return self._stopping.is_set() or self.leases.confirm(job_id)

    def prepare_backends(self) -> None:
        """What a backend does once, slowly, is done at start-up rather than in the first job
        (Modal builds its image, its build log in ours); jobs meanwhile wait for the same work."""
        for name in self.settings.backends:
            try:
                self.backend_factory(name).prepare()
            except Exception as exc:  # the jobs will say what is wrong; the app must still start
                log.warning("could not prepare the %s backend: %s", name, exc)

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs, end the running sandboxes and record how their jobs ended.

        Runs have `timeout` seconds (APP_STOP_SECONDS) to stop the normal way; the sandboxes
        of the rest are ended by id. When this returns no sandbox this process started is
        running. Safe to call twice."""
        with self._lock:   # from here no worker registers a new run (see _run)
            first = not self._stopping.is_set()
            self._stopping.set()
            cancels = list(self._cancels.values())
        self._wake.set()
        for cancel in cancels:
            cancel.set()
        if first and self._started and not self._others_run_on():
            for job in self.store.jobs_with_status(Status.QUEUED):
                self._emit_quietly(job["id"], ev.make_event(ev.STATUS, {"status": Status.QUEUED,
                                                                       "message": STAYS_QUEUED}))
        deadline = time.monotonic() + (self.settings.stop_seconds if timeout is None else timeout)
        with self._lock:
            threads = [*self._threads, *self._workers[1:]]
        for t in threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        while self._running() and time.monotonic() < deadline:   # handed-off runs hold no thread
            time.sleep(0.05)
        with self._lock:
            left = [job_id for job_id in self._cancels if job_id not in self._recorded]
        for job_id in left:   # its run did not end in time: end its sandbox by id
            self._end_left_running(job_id)
        if left:
            log.warning("stopping: %d run(s) did not stop in time; their sandboxes were ended by id", len(left))
        self._write_unwritten_ends()   # a last try; what still fails, another runner recovers
        if self._started:
            try:
                self.leases.end()
            except Exception:
                log.exception("could not remove this runner's row; it expires by itself")

    def _others_run_on(self) -> bool:
        """Do other runners run the queue on once this one stops?"""
        try:
            return bool(self.leases.others())
        except Exception:
            return False

    def _end_left_running(self, job_id: str) -> None:
        with self._lock:
            backend, sandbox_id = self._sandboxes.get(job_id, ("", ""))
        if sandbox_id:
            self._end_sandbox(backend, sandbox_id)
        if self._cancel_requested(job_id):
            self._finish(job_id, Status.CANCELLED, "cancelled by the user")
        else:
            self._finish(job_id, Status.INTERRUPTED, "the server stopped while the job ran")

    def _end_sandbox(self, backend: str, sandbox_id: str) -> bool:
        try:
            return self.backend_factory(backend).end_sandbox(sandbox_id)
        except Exception as exc:  # a backend that cannot load or answer must not stop the app
            log.warning("could not end sandbox %s (%s): %r", sandbox_id, backend, exc)
            return False

    # -- admission and control ---------------------------------------------

    def admission_error(self, owner: str, address: str = "") -> str | None:
        """Why a new job from `owner` (at client `address`) must wait (429), or None."""
        total, owners, address_count = self.store.active_counts(owner, address)
        if owners >= self.settings.max_active_per_owner:
            return (f"you already have {self.settings.max_active_per_owner} jobs queued or running; "
                    "wait for one to finish")
        if owner.startswith(ANONYMOUS) and address_count >= self.settings.max_active_per_address:
            return (f"visitors from your address already have {self.settings.max_active_per_address} jobs "
                    "queued or running; wait for one to finish")
        if total >= self.settings.max_active_jobs:
            return "the server is at its limit of queued and running jobs; try again shortly"
        return None

    def submit(self, job: dict[str, Any], notes: Sequence[str] = ()) -> dict[str, Any] | None:
        """Create a queued job, unless a cap is reached (then None). Works in any process.

        `notes` (what preparing its workspace decided) go to the job's log as warnings."""
        job = self.store.create_job(job, self.settings.max_active_per_owner, self.settings.max_active_jobs,
                                    self.settings.max_active_per_address)
        if job is None:
            return None
        for note in notes:
            self.emit(job["id"], ev.make_event(ev.WARNING, {"message": note}))
        message = STAYS_QUEUED if self._stopping.is_set() else "waiting for a free sandbox"
        self.emit(job["id"], ev.make_event(ev.STATUS, {"status": Status.QUEUED, "message": message}))
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> None:
        """Queued: cancelled at once. Running: the sandbox is stopped (by whichever process runs it)."""
        job = self.store.get_job(job_id)
        if job is not None and job["status"] == Status.QUEUED:
            # The event goes first: viewers get `end` only once the job's status is final,
            # and every event stored before that is delivered before it.
            self.emit(job_id, ev.make_event(ev.STATUS, {"status": Status.CANCELLED,
                                                        "message": "cancelled before it started"}))
            if self.store.update_job(job_id, only_if_status=(Status.QUEUED,), status=Status.CANCELLED,
                                     finished=time.time(), reason="cancelled before it started"):
                return
            # A worker took it meanwhile: stop it like any running job.
        self.store.update_job(job_id, only_if_status=(Status.RUNNING,), cancel_requested=1)
        with self._lock:
            flag = self._cancels.get(job_id)
        if flag is not None:
            flag.set()  # running here: stop now rather than at the next check of the flag

    def emit(self, job_id: str, event: dict[str, Any]) -> int:
        seq = self.store.append_event(job_id, event)
        self.hub.notify(job_id)
        return seq

    def recover(self, sweep: bool = False) -> tuple[int, int]:
        """Take over the running jobs whose runner is gone or whose lease expired (each by exactly one
        runner), end their sandboxes by their stored ids, let their backends sweep what dead
        processes left (and, at start, `sweep`, the default backend too), then mark those jobs
        interrupted. A live runner's jobs are never touched. Returns (sandboxes ended by id, found
        by sweeping)."""
        orphans = [(job_id, holder) for job_id, holder in self.leases.orphans() if self.leases.take_over(job_id, holder)]
        taken = [(job, holder) for job_id, holder in orphans if (job := self.store.get_job(job_id))]
        by_id = sum(self._end_sandbox(job["backend"], job["sandbox_id"]) for job, _ in taken if job["sandbox_id"])
        swept = 0
        backends = {job["backend"] for job, _ in taken} | ({self.settings.default_backend} if sweep else set())
        for name in sorted(backends):
            try:
                swept += self.backend_factory(name).sweep_orphans()
            except Exception as exc:  # a backend that cannot load must not stop the app
                log.warning("sweep_orphans(%s) failed: %r", name, exc)
        for job, holder in taken:
            self._record_interrupted(job, holder)
        if taken or by_id or swept:
            log.warning("recovery: %d job(s) taken over from runners that stopped; %d sandbox(es) ended by id, "
                        "%d more left by a dead process ended", len(taken), by_id, swept)
        return by_id, swept

    def _record_interrupted(self, job: dict[str, Any], holder: str) -> None:
        message = ("the process running this job stopped or restarted (runner "
                   f"{holder or 'unknown'}); the job was stopped")
        self.emit(job["id"], ev.make_event(ev.ERROR, {"message": message}))
        self.emit(job["id"], ev.make_event(ev.STATUS, {"status": Status.INTERRUPTED, "message": message}))
        self.store.update_job(job["id"], only_if_status=(Status.RUNNING,), status=Status.INTERRUPTED,
                              finished=time.time(), reason=message, error=message)
        self.leases.release(job["id"])

    # -- running ------------------------------------------------------------

    def _work(self) -> None:
        # Jobs are claimed from the database, so jobs submitted by any process run here.
        while not self._stopping.is_set():
            try:
                if self._running() >= self.settings.workers:   # APP_WORKERS jobs run already
                    self._wake.wait(self.settings.poll_seconds)
                    self._wake.clear()
                    continue
                job_id = self.leases.claim()
                if job_id is None:
                    # PostgreSQL's SKIP LOCKED also passes over a queued job whose row another
                    # transaction holds for a moment (its web process storing its first events):
                    # then look again shortly; a notice already came and none may follow.
                    self._wake.wait(RECHECK_SECONDS if self.store.any_queued() else self.settings.poll_seconds)
                    self._wake.clear()
                    continue
                self._run(job_id)
            except Exception:  # never lose a worker thread
                log.exception("job worker error")
                time.sleep(1)

    def _running(self) -> int:
        with self._lock:
            return len(self._cancels)

    def _hold_worker(self, held: bool) -> None:
        """A job takes (or gives back) this worker thread: while it holds it, another worker
        claims the next job, up to APP_WORKERS threads."""
        with self._lock:
            self._busy += 1 if held else -1
            if not held or self._busy < len(self._workers) or len(self._workers) >= self.settings.workers:
                return
            worker = threading.Thread(target=self._work, name=f"job-worker-{len(self._workers)}", daemon=True)
            self._workers.append(worker)
        worker.start()

    def _watch_cancels(self) -> None:
        """One thread for every running job: a cancel asked through another process stops its
        run here within a second."""
        while not self._stopping.wait(0.5):
            try:
                with self._lock:
                    flags = dict(self._cancels)
                for job_id in self.store.cancels_requested() & flags.keys() if flags else ():
                    flags[job_id].set()
            except Exception:   # the database is busy for a moment: look again next time
                log.exception("cancel watch: could not read the jobs")

    def _run(self, job_id: str) -> None:
        cancel = threading.Event()
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._cancels[job_id] = cancel   # stop() sets it from now on
        if stopping:   # claimed as the server began to stop: back to the queue, untouched
            if self.store.update_job(job_id, only_if_status=(Status.RUNNING,), status=Status.QUEUED, started=None,
                                     runner=""):
                self._emit_quietly(job_id, ev.make_event(ev.STATUS, {"status": Status.QUEUED,
                                                                     "message": STAYS_QUEUED}))
            self.leases.release(job_id)
            return
        status, reason, exit_code, error = Status.ERROR, "", None, ""
        handed_off = False
        budget = EventBudget(job_id, self.settings.max_events_per_job, self.settings.max_event_bytes_per_job)
        try:
            job = self.store.get_job(job_id)
            self.emit(job_id, ev.make_event(ev.STATUS, {"status": Status.RUNNING,
                                                        "message": "a worker picked up the job"}))

            def on_sandbox(sandbox_id: str) -> None:
                if self._ours(job_id):  # stored before anyone sees it: whoever finds the job running can end it
                    self.store.update_job(job_id, sandbox_id=sandbox_id)
                    with self._lock:
                        self._sandboxes[job_id] = (job["backend"], sandbox_id)

            def on_event(event: dict[str, Any]) -> None:
                if not self._ours(job_id):  # its lease, and so the job, went to another runner
                    return
                for stored in budget.admit(event):   # past the cap per job, counted, not stored
                    self.emit(job_id, stored)

            run = self.job(job), on_event, cancel
            backend = self.backend_factory(job["backend"])
            future = submit_job(*run, backend=backend, on_sandbox=on_sandbox)
            if future is not None:   # runs without this thread (Modal's runner): it ends in a callback
                future.add_done_callback(lambda f: self._run_ended(job_id, budget, *self._ran(job_id, f.result)))
                handed_off = True
                return
            self._hold_worker(True)
            try:
                status, reason, exit_code, error = self._ran(
                    job_id, lambda: run_job(*run, backend=backend, on_sandbox=on_sandbox))
            finally:
                self._hold_worker(False)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            reason = "the sandbox could not be run"
            self._emit_quietly(job_id, ev.make_event(ev.ERROR, {"message": f"{reason}: {error}"}))
            log.exception("job %s: the sandbox could not be run", job_id)
        finally:
            if not handed_off:
                self._run_ended(job_id, budget, status, reason, exit_code, error)

    def _ran(self, job_id: str, result_of: Callable[[], Any]) -> tuple[str, str, int | None, str]:
        """(status, reason, exit code, error) of a run, from its result."""
        try:
            result = result_of()
            return result.status, result.reason, result.exit_code, ""
        except Exception as exc:
            error, reason = f"{type(exc).__name__}: {exc}", "the sandbox could not be run"
            self._emit_quietly(job_id, ev.make_event(ev.ERROR, {"message": f"{reason}: {error}"}))
            log.exception("job %s: the sandbox could not be run", job_id)
            return Status.ERROR, reason, None, error

    def _run_ended(self, job_id: str, budget: EventBudget, status: str, reason: str, exit_code: int | None,
                   error: str) -> None:
        """Record how a run ended (on its worker, or in the callback of a handed-off run)."""
        try:
            if status not in ev.RUN_END:
                status = Status.ERROR
            if status == Status.CANCELLED and self._stopping.is_set() and not self._cancel_requested(job_id):
                status, reason = Status.INTERRUPTED, "the server stopped while the job ran"
            if self._ours(job_id):
                if left_out := budget.summary():   # what the run printed past its log's cap
                    self._emit_quietly(job_id, left_out)
                self._finish(job_id, status, reason, exit_code, error)
            else:  # the runner that took it over records the job's end
                log.warning("job %s: its end is left to the runner that took its lease over", job_id)
                self.leases.release(job_id)
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)
                self._sandboxes.pop(job_id, None)
                self._recorded.discard(job_id)
            self._wake.set()   # room for the next job

    def _finish(self, job_id: str, status: str, reason: str, exit_code: int | None = None,
                error: str = "") -> None:
        """Write how a job running here ended, once (its worker and stop() may both get here)."""
        with self._lock:
            if job_id in self._recorded or job_id not in self._cancels:
                return
            self._recorded.add(job_id)
        # The final status event goes before the job's status: a viewer that sees the
        # job finished has every event. The status is written even if that event fails,
        # and what the database refuses (a full disk) is tried again, so no job stays "running".
        event = ev.make_event(ev.STATUS, {"status": status, "message": reason})
        fields = {"status": status, "reason": reason, "exit_code": exit_code, "error": error,
                  "finished": time.time()}
        if not self._write_end(job_id, event, fields):
            log.error("job %s: could not record that it ended (%s); trying again every %g s",
                      job_id, status, self.leases.interval)

    def _write_end(self, job_id: str, event: dict[str, Any] | None, fields: dict[str, Any]) -> bool:
        """Write a job's final event (unless already written: None) and then its status."""
        try:
            if event is not None:
                self.emit(job_id, event)
                event = None
            self.store.update_job(job_id, only_if_status=(Status.RUNNING,), **fields)
        except Exception as exc:
            with self._lock:
                self._unwritten[job_id] = (event, fields)
            log.debug("job %s: its end not written: %r", job_id, exc)
            return False
        with self._lock:
            self._unwritten.pop(job_id, None)
        self.leases.release(job_id)
        self.hub.notify(job_id)
        return True

    def _write_unwritten_ends(self) -> None:
        with self._lock:
            pending = dict(self._unwritten)
        for job_id, (event, fields) in pending.items():
            if self._ours(job_id) and self._write_end(job_id, event, fields):
                log.warning("job %s: its end (%s) is recorded at last", job_id, fields["status"])

    def _cancel_requested(self, job_id: str) -> bool:
        try:
            job = self.store.get_job(job_id)
        except Exception:
            return False
        return bool(job and job["cancel_requested"])

    def _emit_quietly(self, job_id: str, event: dict[str, Any]) -> None:
        try:
            self.emit(job_id, event)
        except Exception:
            log.exception("job %s: could not store an event", job_id)

    def job(self, job: dict[str, Any]) -> Job:
        """The stored job as the library's request for its run."""
        # Stored when the job was queued, maybe by an older version: fields added since
        # take today's defaults, renamed ones their new names.
        limits = Limits.restore(job["limits"], self.settings.limits) if job["limits"] else self.settings.limits
        return Job(id=job["id"], workspace=job_workspace(self.settings.data_dir, job["id"]),
                   results=self.settings.results_dir(job["id"]), backend=job["backend"], model=job["model"],
                   instructions=job["instructions"], env=job["env"], limits=limits,
                   network=self.settings.sandbox_network, previous_summary=job["previous_summary"],
                   record={"previous": job["parent"]})
