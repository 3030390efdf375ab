"""The runner lease: which one process runs the jobs of a database.

Any number of processes may serve one database (pages, API, event streams);
exactly one runs its jobs: the holder of the lease row in the database
(holder id, last heartbeat, expiry). The holder renews it every third of its
length. Another process started with APP_RUN_JOBS=1 serves everything else
and waits: it takes the lease once it has expired (the holder stopped
renewing it: crashed, hung, or cut off), or at once when the holder was a
process on this machine that no longer exists, or when the holder gave it up
on a clean stop. Only after taking the lease does a process recover jobs left
`running`, and only those another runner claimed: a live runner's jobs are
never touched, and a job is never run twice.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from agent_sandbox.isolation.owners import process_alive, this_process
from frontend.store import JobStore

log = logging.getLogger(__name__)


def holder_gone(holder: str) -> bool:
    """Is the process that holds (held) the lease known to be gone? ("host:pid:nonce")"""
    return not process_alive(holder.rsplit(":", 1)[0])


class RunnerLease:
    def __init__(self, store: JobStore, seconds: float):
        self.store = store
        self.seconds = seconds
        self.holder = f"{this_process()}:{secrets.token_hex(4)}"  # unique even if the pid is reused
        self.held = threading.Event()
        self.other: dict[str, Any] | None = None  # the lease as another process holds it
        self._valid_until = 0.0  # monotonic: before this the lease is surely still ours

    def take(self) -> dict[str, Any] | None:
        """Try to take the lease; returns the previous holder's lease when taken over from one, else None.

        `held` says whether we have it now."""
        asked = time.monotonic()
        lease = self.store.take_lease(self.holder, self.seconds, holder_gone)
        if lease["holder"] != self.holder:
            self.other = lease
            return None
        self.other = None
        self._valid_until = asked + self.seconds
        self.held.set()
        return lease["previous"]

    def renew(self) -> bool:
        asked = time.monotonic()
        if self.store.renew_lease(self.holder, self.seconds):
            self._valid_until = asked + self.seconds
            return True
        self.held.clear()
        return False

    def confirm(self) -> bool:
        """Is the lease still ours? Asks the database only once our own reckoning says it may have
        expired (say this process was stopped for a while): then the answer decides whether
        what we are about to write about a job is still ours to write."""
        if not self.held.is_set():
            return False
        return time.monotonic() < self._valid_until or self.renew()

    def release(self) -> None:
        if self.held.is_set():
            self.held.clear()
            self.store.release_lease(self.holder)

    @property
    def interval(self) -> float:
        """How often the holder renews, and a waiting process looks again."""
        return self.seconds / 3

    def describe_other(self) -> str:
        if not self.other:
            return "another process"
        ago = max(0.0, time.time() - self.other["heartbeat"])
        return f"process {self.other['holder']} (last heartbeat {ago:.0f} s ago)"
