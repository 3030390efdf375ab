"""What one owner's jobs may hold on disk, and how long finished jobs are kept.

- Quota (APP_MAX_STORAGE_MB_PER_OWNER; 0: none): an owner's jobs count their
  uploads and results by real size (allocated blocks: a sparse file counts what it
  holds, not its length). A queued or running job counts its uploads and all the
  results it may still bring back (its `max_total_bytes`). A new job is refused
  (507) once the owner is at the quota, and the results of one admitted are cut to
  what is left of it, so the owner's jobs never hold more than the quota on disk.
  A finished job's folders no longer change: each is measured once, then remembered.
- Retention (APP_RETENTION_DAYS; 0: for ever): a thread removes the jobs that
  finished longer ago than that, as their owner's delete would (log, uploads,
  results), and logs how many.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from flask import current_app
from werkzeug.exceptions import HTTPException

from agent_sandbox.events import ACTIVE
from agent_sandbox.workspace import job_workspace
from frontend.reports import CACHE_FOLDER

log = logging.getLogger(__name__)
MB = 1024 * 1024
DAY = 86400.0
REMEMBERED = 100_000   # finished jobs whose size is kept in memory


class InsufficientStorage(HTTPException):
    code = 507
    description = "your jobs hold as much as this server keeps for one owner"


def disk_bytes(folder: Path) -> int:
    """Bytes `folder` really takes on disk (never following a link)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class Storage:
    def __init__(self, settings, store):
        self.settings, self.store = settings, store
        self.quota = settings.max_storage_per_owner
        self._finished: dict[str, int] = {}   # finished job -> its bytes on disk
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- the quota -------------------------------------------------------------

    def usage(self, owner: str) -> tuple[int, int]:
        """(bytes the owner's jobs hold, bytes their queued and running jobs may still bring back)."""
        held = reserved = 0
        for job in self.store.list_jobs(owner, limit=1_000_000):
            if job["status"] in ACTIVE:
                held += disk_bytes(job_workspace(self.settings.data_dir, job["id"]))
                reserved += int((job["limits"] or {}).get("max_total_bytes") or self.settings.limits.max_total_bytes)
            else:
                held += self._finished_bytes(job["id"])
        return held, reserved

    def check_room(self, owner: str) -> None:
        """Before an upload is read: 507 if the owner is at the quota already."""
        if self.quota:
            self._left(owner, 0)

    def job_limits(self, owner: str, upload_bytes: int) -> dict[str, Any]:
        """The limits of a new job of `owner` with `upload_bytes` of inputs: its results cut to what is
        left of the quota (507 if nothing is)."""
        limits = self.settings.limits.to_dict()
        if self.quota:
            limits["max_total_bytes"] = min(limits["max_total_bytes"], self._left(owner, upload_bytes))
        return limits

    def _left(self, owner: str, upload_bytes: int) -> int:
        held, reserved = self.usage(owner)
        left = self.quota - held - reserved - upload_bytes
        if left <= 0:
            more = f", this job's files {_mb(upload_bytes)}" if upload_bytes else ""
            pending = f", and your queued and running jobs may bring back {_mb(reserved)} more" if reserved else ""
            raise InsufficientStorage(
                f"this server keeps {_mb(self.quota)} per owner (APP_MAX_STORAGE_MB_PER_OWNER): your jobs hold "
                f"{_mb(held)}{more}{pending}; delete some jobs, or wait for yours to finish")
        return left

    def _finished_bytes(self, job_id: str) -> int:
        with self._lock:
            known = self._finished.get(job_id)
        if known is None:
            data = self.settings.data_dir
            known = disk_bytes(job_workspace(data, job_id)) + disk_bytes(self.settings.results_dir(job_id))
            with self._lock:
                if len(self._finished) >= REMEMBERED:   # measured again when next asked
                    self._finished.clear()
                self._finished[job_id] = known
        return known

    # -- removal and retention -------------------------------------------------

    def remove(self, job_id: str) -> None:
        """Delete a finished job: its log, its uploads, its results, what was rendered of them."""
        self.store.mark_deleted(job_id)
        shutil.rmtree(job_workspace(self.settings.data_dir, job_id), ignore_errors=True)
        shutil.rmtree(self.settings.results_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.settings.data_dir / CACHE_FOLDER / job_id, ignore_errors=True)
        with self._lock:
            self._finished.pop(job_id, None)

    def start_retention(self) -> Storage:
        """Remove expired jobs from now on, every tenth of the retention period (1 s to 1 h)."""
        if self.settings.retention_days > 0:
            threading.Thread(target=self._keep_removing, name="retention", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def remove_expired(self) -> int:
        """Remove the jobs that finished more than APP_RETENTION_DAYS ago; how many."""
        days = self.settings.retention_days
        removed = 0
        while expired := self.store.finished_before(time.time() - days * DAY, limit=100):
            for job_id in expired:
                self.remove(job_id)
            removed += len(expired)
        if removed:
            log.info("retention: removed %d job%s finished more than %g days ago (APP_RETENTION_DAYS)",
                     removed, "" if removed == 1 else "s", days)
        return removed

    def _keep_removing(self) -> None:
        every = min(3600.0, max(1.0, self.settings.retention_days * DAY / 10))
        while not self._stop.wait(every):
            try:
                self.remove_expired()
            except Exception:  # the database is busy or gone for a moment: next time
                log.exception("retention: could not remove expired jobs")


def storage() -> Storage:
    """The app's storage keeper (made with the app)."""
    return current_app.extensions["storage"]


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB" if n % MB else f"{n // MB} MB"
