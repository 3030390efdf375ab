"""JobStore: jobs and their events in one SQLite file.

The events table is the single source for every live log: the executor
appends, the event broadcaster (feed.py) reads. Each job's events are numbered
by the host 1, 2, 3... with no gaps (that number is the SSE `id:`), because
the number is assigned inside the same transaction that stores the event.

Schema changes are a list of small migration functions; PRAGMA user_version
records how many have run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from agent_sandbox.events import ACTIVE, Status

QUEUED, RUNNING = Status.QUEUED, Status.RUNNING
ANONYMOUS = "visitor:"  # owner ids of visitors known only by their cookie (frontend.identity)


def _m1_jobs_and_events(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        instructions TEXT NOT NULL DEFAULT '',
        files TEXT NOT NULL DEFAULT '[]',
        limits TEXT NOT NULL DEFAULT '{}',
        env TEXT NOT NULL DEFAULT '{}',
        reason TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        exit_code INTEGER,
        last_seq INTEGER NOT NULL DEFAULT 0)""")
    db.execute("CREATE INDEX jobs_owner_created ON jobs(owner, created)")
    db.execute("CREATE INDEX jobs_status_created ON jobs(status, created)")
    db.execute("""CREATE TABLE events (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)) WITHOUT ROWID""")


def _m2_cancel_requested(db: sqlite3.Connection) -> None:
    # A cancel asked for in one process reaches the process running the job through this flag.
    db.execute("ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")


def _m3_name_deleted_share(db: sqlite3.Connection) -> None:
    # The owner's name for a job (empty: named by its files), a deleted flag (the row stays so
    # the id is never reused; events and files go) and a revocable read-only share token.
    db.execute("ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE jobs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE jobs ADD COLUMN share_token TEXT")
    db.execute("CREATE UNIQUE INDEX jobs_share_token ON jobs(share_token) WHERE share_token IS NOT NULL")


def _m4_follow_ups(db: sqlite3.Connection) -> None:
    # A follow-up job names the job it continues and keeps what its model is told about it.
    db.execute("ALTER TABLE jobs ADD COLUMN parent TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE jobs ADD COLUMN previous_summary TEXT NOT NULL DEFAULT ''")


def _m5_sandbox_id(db: sqlite3.Connection) -> None:
    # The run's sandbox on its backend (a cgroup, a container, a Modal sandbox), stored as soon
    # as it exists: a process that finds the job running after a crash ends the sandbox by it.
    db.execute("ALTER TABLE jobs ADD COLUMN sandbox_id TEXT NOT NULL DEFAULT ''")


def _m6_runner_lease(db: sqlite3.Connection) -> None:
    # One process runs jobs per database: the holder of this lease (renewed by its heartbeat).
    # Each running job names the holder that runs it, so recovery touches only what a
    # runner whose lease expired left behind.
    db.execute("""CREATE TABLE runner_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        heartbeat REAL NOT NULL,
        expires REAL NOT NULL)""")
    db.execute("ALTER TABLE jobs ADD COLUMN runner TEXT NOT NULL DEFAULT ''")


def _m7_client_address(db: sqlite3.Connection) -> None:
    # Anonymous visitors from one client address share a cap on active jobs.
    db.execute("ALTER TABLE jobs ADD COLUMN address TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX jobs_address_status ON jobs(address, status)")


MIGRATIONS = [_m1_jobs_and_events, _m2_cancel_requested, _m3_name_deleted_share, _m4_follow_ups,
              _m5_sandbox_id, _m6_runner_lease, _m7_client_address]

JOB_FIELDS = ("id", "owner", "status", "created", "started", "finished", "backend", "model",
              "instructions", "files", "limits", "env", "reason", "error", "exit_code", "last_seq",
              "cancel_requested", "name", "deleted", "share_token", "parent", "previous_summary",
              "sandbox_id", "runner", "address")
_JSON_FIELDS = ("files", "limits", "env")


class JobStore:
    """Thread-safe access to the jobs database: one connection per thread, one writer lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.migrate()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): committed when the
        block ends, rolled back if it raises. Readers in other processes never wait."""
        db = self._db()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): then a
                # ROLLBACK would fail and hide the real error.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for n, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(db)
                db.execute(f"PRAGMA user_version={n}")

    # -- jobs ---------------------------------------------------------------

    def create_job(self, job: dict[str, Any], max_per_owner: int | None = None,
                   max_total: int | None = None, max_per_address: int | None = None) -> dict[str, Any] | None:
        """Insert a job; with caps, only if the owner, the anonymous visitors of its client
        address and everybody stay within them (else None).

        The count and the insert are one transaction, so the caps hold across
        threads and processes.
        """
        row = {k: job.get(k) for k in JOB_FIELDS}
        row.update(status=job.get("status", QUEUED), created=job.get("created") or time.time(),
                   instructions=job.get("instructions") or "", reason="", error="", last_seq=0,
                   cancel_requested=0, name=(job.get("name") or "")[:200], deleted=0, share_token=None,
                   parent=job.get("parent") or "", previous_summary=job.get("previous_summary") or "",
                   sandbox_id="", runner="", address=job.get("address") or "")
        for k in _JSON_FIELDS:
            row[k] = json.dumps(job.get(k) or ([] if k == "files" else {}))
        with self.transaction() as db:
            if ((max_per_owner is not None and self.count_active(row["owner"]) >= max_per_owner)
                    or (max_per_address is not None and row["owner"].startswith(ANONYMOUS)
                        and self.count_active(address=row["address"]) >= max_per_address)
                    or (max_total is not None and self.count_active() >= max_total)):
                return None
            db.execute(f"INSERT INTO jobs ({','.join(row)}) VALUES ({','.join('?' * len(row))})",
                       list(row.values()))
        return self.get_job(row["id"])

    def claim_next(self, runner: str) -> str | None:
        """Move the oldest queued job to running under `runner` and return its id (None if the
        queue is empty, or if `runner` no longer holds the lease: it must not start anything)."""
        with self.transaction() as db:
            if not self._holds(db, runner):
                return None
            row = db.execute("SELECT id FROM jobs WHERE status=? ORDER BY created LIMIT 1",
                             (QUEUED,)).fetchone()
            if row:
                db.execute("UPDATE jobs SET status=?, started=?, runner=? WHERE id=?",
                           (RUNNING, time.time(), runner, row[0]))
        return row[0] if row else None

    # -- the runner lease ---------------------------------------------------

    def take_lease(self, holder: str, seconds: float, holder_gone=lambda holder: False) -> dict[str, Any]:
        """Take the runner lease if it is free, expired, ours already, or its holder is known to be
        gone (`holder_gone(holder)`); returns the lease as it now stands (holder: who has it)."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT holder, heartbeat, expires FROM runner_lease WHERE id=1").fetchone()
            if row is None or row["holder"] == holder or row["expires"] <= now or holder_gone(row["holder"]):
                db.execute("INSERT OR REPLACE INTO runner_lease (id, holder, heartbeat, expires) VALUES (1,?,?,?)",
                           (holder, now, now + seconds))
                previous = dict(row) if row is not None and row["holder"] != holder else None
                return {"holder": holder, "heartbeat": now, "expires": now + seconds, "previous": previous}
            return {**dict(row), "previous": None}

    def renew_lease(self, holder: str, seconds: float) -> bool:
        """Extend our lease; False if another process has taken it meanwhile."""
        now = time.time()
        with self.transaction() as db:
            return db.execute("UPDATE runner_lease SET heartbeat=?, expires=? WHERE id=1 AND holder=?",
                              (now, now + seconds, holder)).rowcount == 1

    def release_lease(self, holder: str) -> None:
        """Give the lease up (a clean stop), so a waiting process takes over at once."""
        with self.transaction() as db:
            db.execute("DELETE FROM runner_lease WHERE id=1 AND holder=?", (holder,))

    @staticmethod
    def _holds(db: sqlite3.Connection, holder: str) -> bool:
        row = db.execute("SELECT expires FROM runner_lease WHERE id=1 AND holder=?", (holder,)).fetchone()
        return row is not None and row[0] > time.time()

    def orphaned_jobs(self, runner: str) -> list[dict[str, Any]]:
        """Jobs left `running` by another runner (call only while holding the lease: that
        runner's lease expired or was given up, so nothing runs them any more)."""
        rows = self._db().execute("SELECT * FROM jobs WHERE status=? AND runner!=? ORDER BY created",
                                  (RUNNING, runner)).fetchall()
        return [_job(r) for r in rows]

    def get_job(self, job_id: str, owner: str | None = None) -> dict[str, Any] | None:
        sql, args = "SELECT * FROM jobs WHERE id=?", [job_id]
        if owner is not None:  # what an owner asks for: a deleted job is gone
            sql, args = sql + " AND owner=? AND deleted=0", args + [owner]
        row = self._db().execute(sql, args).fetchone()
        return _job(row) if row else None

    def list_jobs(self, owner: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT * FROM jobs WHERE owner=? AND deleted=0 ORDER BY created DESC LIMIT ?",
                                  (owner, limit)).fetchall()
        return [_job(r) for r in rows]

    def shared_job(self, job_id: str | None, token: str) -> dict[str, Any] | None:
        """The job this share token opens (and, given an id, only if it is that job)."""
        if not token:
            return None
        sql, args = "SELECT * FROM jobs WHERE share_token=? AND deleted=0", [token]
        if job_id is not None:
            sql, args = sql + " AND id=?", args + [job_id]
        row = self._db().execute(sql, args).fetchone()
        return _job(row) if row else None

    def mark_deleted(self, job_id: str) -> None:
        """Hide the job for good and drop its events (its files are removed by the caller)."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET deleted=1, share_token=NULL, name='' WHERE id=?", (job_id,))
            db.execute("DELETE FROM events WHERE job_id=?", (job_id,))

    def last_message(self, job_id: str) -> str:
        """The agent's last message (its summary of the run), or ''."""
        row = self._db().execute("SELECT event FROM events WHERE job_id=? AND type='message' "
                                 "ORDER BY seq DESC LIMIT 1", (job_id,)).fetchone()
        return (json.loads(row[0]).get("data") or {}).get("text", "") if row else ""

    def cancels_requested(self) -> set[str]:
        """Running jobs whose cancel was asked for (through any process): one small query for all."""
        rows = self._db().execute("SELECT id FROM jobs WHERE status=? AND cancel_requested=1", (RUNNING,))
        return {row[0] for row in rows.fetchall()}

    def jobs_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(statuses))
        rows = self._db().execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created",
                                  statuses).fetchall()
        return [_job(r) for r in rows]

    def count_active(self, owner: str | None = None, address: str | None = None) -> int:
        """Queued and running jobs: everybody's, one owner's, or the anonymous visitors' of one address."""
        sql, args = f"SELECT COUNT(*) FROM jobs WHERE status IN ({','.join('?' * len(ACTIVE))})", sorted(ACTIVE)
        if owner is not None:
            sql, args = sql + " AND owner=?", args + [owner]
        if address is not None:
            sql, args = sql + " AND address=? AND owner LIKE ?", args + [address, ANONYMOUS + "%"]
        return self._db().execute(sql, args).fetchone()[0]

    def queue_position(self, job: dict[str, Any]) -> int | None:
        """1 for the next job to start; None unless queued."""
        if job["status"] != QUEUED:
            return None
        ahead = self._db().execute("SELECT COUNT(*) FROM jobs WHERE status=? AND created<?",
                                   (QUEUED, job["created"])).fetchone()[0]
        return ahead + 1

    def update_job(self, job_id: str, only_if_status: tuple[str, ...] = (), **fields: Any) -> bool:
        """Set fields; with only_if_status, only when the job is in one of those states."""
        for k in _JSON_FIELDS:
            if k in fields:
                fields[k] = json.dumps(fields[k])
        sets = ",".join(f"{k}=?" for k in fields)
        sql, args = f"UPDATE jobs SET {sets} WHERE id=?", [*fields.values(), job_id]
        if only_if_status:
            sql += f" AND status IN ({','.join('?' * len(only_if_status))})"
            args += list(only_if_status)
        with self._write_lock:
            return self._db().execute(sql, args).rowcount == 1

    # -- events -------------------------------------------------------------

    def append_event(self, job_id: str, event: dict[str, Any]) -> int:
        """Store one event under the job's next sequence number; returns it."""
        with self.transaction() as db:
            seq = db.execute("SELECT last_seq FROM jobs WHERE id=?", (job_id,)).fetchone()[0] + 1
            stored = dict(event, seq=seq)
            db.execute("INSERT INTO events (job_id, seq, type, event) VALUES (?,?,?,?)",
                       (job_id, seq, str(stored.get("type", "raw")),
                        json.dumps(stored, ensure_ascii=False, separators=(",", ":"), default=str)))
            db.execute("UPDATE jobs SET last_seq=? WHERE id=?", (seq, job_id))
        return seq

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[tuple[int, str, str]]:
        """(seq, type, event JSON) for events with seq > after, oldest first."""
        return [tuple(r) for r in self._db().execute(
            "SELECT seq, type, event FROM events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?",
            (job_id, after, limit))]

    def iter_events(self, job_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
        while batch := self.events_after(job_id, after):
            for _seq, _type, text in batch:
                yield json.loads(text)
            after = batch[-1][0]

    def last_event(self, job_id: str, type: str) -> dict[str, Any] | None:
        """The job's latest event of one type (e.g. its token usage so far)."""
        row = self._db().execute("SELECT event FROM events WHERE job_id=? AND type=? ORDER BY seq DESC LIMIT 1",
                                 (job_id, type)).fetchone()
        return json.loads(row[0]) if row else None

    def progress(self, job_ids: list[str]) -> dict[str, tuple[int, str]]:
        """job id -> (last_seq, status) for many jobs in one query (the broadcaster's poll)."""
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        rows = self._db().execute(f"SELECT id, last_seq, status FROM jobs WHERE id IN ({marks})", job_ids)
        return {r[0]: (r[1], r[2]) for r in rows}


def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for k in _JSON_FIELDS:
        job[k] = json.loads(job[k])
    return job
