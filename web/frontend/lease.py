"""Job leases: which runner runs which job, so several runners, on several hosts, share one queue.

Each running job has its own lease, in its row: the holder (the runner
process that claimed it, "host:pid:nonce"), its last heartbeat and its expiry.
A runner renews the leases of all its jobs in one statement every third of
their length (its heartbeat), and keeps a row of its own in `runners`. Any
runner takes over a running job whose lease has expired (its runner stopped
renewing it: crashed, hung, or cut off), at once when the holder was a
process of this machine that no longer exists; it takes it with one
conditional update, so exactly one runner records how the job ended. A runner
that finds at its heartbeat that a job of its own was taken over stops it and
writes nothing more about it: every job ends once and never runs twice.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from agent_sandbox.isolation.owners import process_alive, this_process
from frontend.store import JobStore


def holder_gone(holder: str) -> bool:
    """Is the runner that holds (held) a lease known to be gone? ("host:pid:nonce"; another
    host's runner is not ours to judge: its leases expire)"""
    return not process_alive(holder.rsplit(":", 1)[0])


class JobLeases:
    """The leases of the jobs this process runs, under one holder id."""

    def __init__(self, store: JobStore, seconds: float, on_lost: Callable[[set[str]], None] = lambda ids: None):
        self.store = store
        self.seconds = seconds
        self.on_lost = on_lost  # told of our jobs another runner took over
        self.holder = f"{this_process()}:{secrets.token_hex(4)}"  # unique even if the pid is reused
        self._valid_until: dict[str, float] = {}  # job id -> monotonic: before this its lease is surely ours
        self._lock = threading.Lock()

    @property
    def interval(self) -> float:
        """How often the holder renews its leases and looks for jobs to take over."""
        return self.seconds / 3

    def claim(self) -> str | None:
        """The oldest queued job, now running under our lease (None: the queue is empty)."""
        asked = time.monotonic()
        job_id = self.store.claim_next(self.holder, self.seconds)
        if job_id is not None:
            self._hold(job_id, asked)
        return job_id

    def beat(self) -> None:
        """Renew our runner row and the lease of every job we run; tell `on_lost` of those we
        no longer hold (only jobs we held before asking: one claimed meanwhile is ours)."""
        asked = time.monotonic()
        held = self.store.renew_leases(self.holder, self.seconds)
        with self._lock:
            lost = {job_id for job_id, until in self._valid_until.items()
                    if job_id not in held and until <= asked + self.seconds}
            for job_id in self._valid_until.keys() & held:
                self._valid_until[job_id] = asked + self.seconds
            for job_id in lost:
                del self._valid_until[job_id]
        if lost:
            self.on_lost(lost)

    def confirm(self, job_id: str) -> bool:
        """Is this job's lease still ours? Asks the database only once our own reckoning says it
        may have expired (say this process was stopped for a while): then the answer decides
        whether what we are about to write about the job is still ours to write."""
        with self._lock:
            until = self._valid_until.get(job_id)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        self.beat()
        with self._lock:
            return job_id in self._valid_until

    def release(self, job_id: str) -> None:
        """The job's end is written (or is another runner's to write): no longer ours to track."""
        with self._lock:
            self._valid_until.pop(job_id, None)

    def orphans(self) -> list[tuple[str, str]]:
        """(job id, holder) of running jobs whose runner is gone or whose lease has expired."""
        local = self.holder.rsplit(":", 2)[0] + ":"   # "host:": the runners of this host
        return [(job["id"], job["runner"]) for job in self.store.leased_elsewhere(self.holder, local)
                if job["expired"] or holder_gone(job["runner"])]

    def take_over(self, job_id: str, previous: str) -> bool:
        """Take the job's lease from `previous`; False if another runner was first."""
        asked = time.monotonic()
        if not self.store.take_over(job_id, previous, self.holder, self.seconds):
            return False
        self._hold(job_id, asked)
        return True

    def others(self) -> list[str]:
        """The other runners with a recent heartbeat."""
        return [r["holder"] for r in self.store.live_runners() if r["holder"] != self.holder]

    def end(self) -> None:
        """A clean stop: this runner no longer counts among the live ones."""
        self.store.end_runner(self.holder)

    def _hold(self, job_id: str, asked: float) -> None:
        with self._lock:
            self._valid_until[job_id] = asked + self.seconds
