"""JobStore: jobs and their events, in one SQLite file or in PostgreSQL.

The events table is the single source for every live log: the executor
appends, the event broadcaster (feed.py) reads. Each job's events are numbered
by the host 1, 2, 3... with no gaps (that number is the SSE `id:`), because
the number is assigned inside the same transaction that stores the event. On
PostgreSQL that transaction also NOTIFYs every web process (`job_events`),
and a new job wakes every runner (`job_queue`); the stored events stay the
truth, so a notice lost is only a delay.

The queue is the jobs table: a runner claims the oldest queued job (with
`FOR UPDATE SKIP LOCKED` on PostgreSQL, so runners never wait for each other)
and takes a lease on it: its holder id, heartbeat and expiry, in the job's
row, renewed by the holder's heartbeat. A running job whose lease expired (or
whose holder is known gone) is taken over by another runner, which records
how it ended (see executor.py). Runners also keep a row each in `runners`.
Lease times are the database's clock (database.py).

Schema changes are a list of small migration functions, the same for both
databases (`d` spells what differs); the database records how many have run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent_sandbox.events import ACTIVE, Status
from frontend.database import ADMISSION_LOCK, open_database

QUEUED, RUNNING = Status.QUEUED, Status.RUNNING
ANONYMOUS = "visitor:"  # owner ids of visitors known only by their cookie (frontend.identity)
EVENTS, QUEUE = "job_events", "job_queue"  # notice channels: a job's events or status; a job queued


def _m1_jobs_and_events(db, d) -> None:
    db.execute(f"""CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        created {d.REAL} NOT NULL,
        started {d.REAL},
        finished {d.REAL},
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        instructions TEXT NOT NULL DEFAULT '',
        files TEXT NOT NULL DEFAULT '[]',
        limits TEXT NOT NULL DEFAULT '{{}}',
        env TEXT NOT NULL DEFAULT '{{}}',
        reason TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        exit_code INTEGER,
        last_seq INTEGER NOT NULL DEFAULT 0)""")
    db.execute("CREATE INDEX jobs_owner_created ON jobs(owner, created)")
    db.execute("CREATE INDEX jobs_status_created ON jobs(status, created)")
    db.execute(f"""CREATE TABLE events (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)){d.WITHOUT_ROWID}""")


def _m2_cancel_requested(db, d) -> None:
    # A cancel asked for in one process reaches the process running the job through this flag.
    db.execute("ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")


def _m3_name_deleted_share(db, d) -> None:
    # The owner's name for a job (empty: named by its files), a deleted flag (the row stays so
    # the id is never reused; events and files go) and a revocable read-only share token.
    db.execute("ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE jobs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE jobs ADD COLUMN share_token TEXT")
    db.execute("CREATE UNIQUE INDEX jobs_share_token ON jobs(share_token) WHERE share_token IS NOT NULL")


def _m4_follow_ups(db, d) -> None:
    # A follow-up job names the job it continues and keeps what its model is told about it.
    db.execute("ALTER TABLE jobs ADD COLUMN parent TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE jobs ADD COLUMN previous_summary TEXT NOT NULL DEFAULT ''")


def _m5_sandbox_id(db, d) -> None:
    # The run's sandbox on its backend (a cgroup, a container, a Modal sandbox), stored as soon
    # as it exists: a process that finds the job running after a crash ends the sandbox by it.
    db.execute("ALTER TABLE jobs ADD COLUMN sandbox_id TEXT NOT NULL DEFAULT ''")


def _m6_runner_lease(db, d) -> None:
    # (Replaced by per-job leases in _m8.) One runner per database, and the runner of each job.
    db.execute(f"""CREATE TABLE runner_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        heartbeat {d.REAL} NOT NULL,
        expires {d.REAL} NOT NULL)""")
    db.execute("ALTER TABLE jobs ADD COLUMN runner TEXT NOT NULL DEFAULT ''")


def _m7_client_address(db, d) -> None:
    # Anonymous visitors from one client address share a cap on active jobs.
    db.execute("ALTER TABLE jobs ADD COLUMN address TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX jobs_address_status ON jobs(address, status)")


def _m8_job_leases(db, d) -> None:
    # Each running job has its own lease (holder: `runner`, heartbeat, expiry), so several
    # runners share the queue; jobs left running under the one lease of before have expired (0).
    # Each runner process keeps a row too, so one that stops knows whether others run on.
    db.execute("DROP TABLE runner_lease")
    db.execute(f"ALTER TABLE jobs ADD COLUMN heartbeat {d.REAL}")
    db.execute(f"ALTER TABLE jobs ADD COLUMN lease_expires {d.REAL} NOT NULL DEFAULT 0")
    db.execute(f"""CREATE TABLE runners (
        holder TEXT PRIMARY KEY,
        started {d.REAL} NOT NULL,
        heartbeat {d.REAL} NOT NULL,
        expires {d.REAL} NOT NULL)""")


def _m9_recovery_links(db, d) -> None:
    # A visitor's personal link that brings its jobs to another browser: only its hash is kept.
    db.execute(f"""CREATE TABLE recovery_links (
        token_hash TEXT PRIMARY KEY,
        owner TEXT NOT NULL UNIQUE,
        created {d.REAL} NOT NULL)""")


MIGRATIONS = [_m1_jobs_and_events, _m2_cancel_requested, _m3_name_deleted_share, _m4_follow_ups,
              _m5_sandbox_id, _m6_runner_lease, _m7_client_address, _m8_job_leases, _m9_recovery_links]

JOB_FIELDS = ("id", "owner", "status", "created", "started", "finished", "backend", "model",
              "instructions", "files", "limits", "env", "reason", "error", "exit_code", "last_seq",
              "cancel_requested", "name", "deleted", "share_token", "parent", "previous_summary",
              "sandbox_id", "runner", "address")
_JSON_FIELDS = ("files", "limits", "env")


class JobStore:
    """Thread-safe access to the jobs database (`target`: a SQLite file, or a postgresql:// URL;
    `connections`: the most PostgreSQL connections this process opens)."""

    def __init__(self, target: Any, connections: int = 8):
        self.db = open_database(target, connections)
        self.migrate()

    def describe(self) -> str:
        """Which database, for logs (never a password)."""
        return self.db.describe()

    def close(self) -> None:
        """Stop listening for notices and close the idle connections (a process that ends)."""
        self.db.close()

    @contextmanager
    def transaction(self, *locks: int) -> Iterator[Any]:
        with self.db.transaction(*locks) as db:
            yield db

    def _rows(self, sql: str, args=()) -> list[Any]:
        with self.db.connect() as db:
            return db.execute(sql, args).fetchall()

    def _row(self, sql: str, args=()) -> Any:
        with self.db.connect() as db:
            return db.execute(sql, args).fetchone()

    def migrate(self) -> None:
        with self.transaction() as db:
            version = self.db.schema_version(db)
            for n, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(db, self.db)
                self.db.set_schema_version(db, n)

    def on_notice(self, channel: str, callback) -> bool:
        """Call `callback(payload)` on each notice of `channel` (EVENTS: a job id; QUEUE), and
        `callback(None)` when listening (re)starts; False where the database has no notices
        (SQLite: poll instead)."""
        return self.db.on_notice(channel, callback)

    # -- jobs ---------------------------------------------------------------

    def create_job(self, job: dict[str, Any], max_per_owner: int | None = None,
                   max_total: int | None = None, max_per_address: int | None = None) -> dict[str, Any] | None:
        """Insert a job; with caps, only if the owner, the anonymous visitors of its client
        address and everybody stay within them (else None).

        The count and the insert are one transaction (one at a time, on PostgreSQL too), so
        the caps hold across threads, processes and hosts.
        """
        row = {k: job.get(k) for k in JOB_FIELDS}
        row.update(status=job.get("status", QUEUED), created=job.get("created") or time.time(),
                   instructions=job.get("instructions") or "", reason="", error="", last_seq=0,
                   cancel_requested=0, name=(job.get("name") or "")[:200], deleted=0, share_token=None,
                   parent=job.get("parent") or "", previous_summary=job.get("previous_summary") or "",
                   sandbox_id="", runner="", address=job.get("address") or "")
        for k in _JSON_FIELDS:
            row[k] = json.dumps(job.get(k) or ([] if k == "files" else {}))
        capped = (max_per_owner, max_total, max_per_address) != (None, None, None)
        with self.transaction(*([ADMISSION_LOCK] if capped else [])) as db:
            total, owners, address = self.active_counts(row["owner"], row["address"])
            if ((max_per_owner is not None and owners >= max_per_owner)
                    or (max_per_address is not None and row["owner"].startswith(ANONYMOUS)
                        and address >= max_per_address)
                    or (max_total is not None and total >= max_total)):
                return None
            db.execute(f"INSERT INTO jobs ({','.join(row)}) VALUES ({','.join('?' * len(row))})",
                       list(row.values()))
            if row["status"] == QUEUED:
                self.db.notify(db, QUEUE, row["id"])
        return self.get_job(row["id"])

    def claim_next(self, holder: str, lease_seconds: float) -> str | None:
        """Move the oldest queued job to running under a lease held by `holder` and return its
        id (None if the queue is empty). Runners claiming at once each get another job."""
        now = self.db.NOW
        with self.transaction() as db:
            row = db.execute(
                f"UPDATE jobs SET status=?, started=?, runner=?, heartbeat={now}, lease_expires={now}+? "
                f"WHERE status=? AND id=(SELECT id FROM jobs WHERE status=? ORDER BY created LIMIT 1"
                f"{self.db.SKIP_LOCKED}) RETURNING id",
                (RUNNING, time.time(), holder, lease_seconds, QUEUED, QUEUED)).fetchone()
        return row[0] if row else None

    # -- leases: each running job's, renewed by its runner ------------------

    def renew_leases(self, holder: str, seconds: float) -> set[str]:
        """The heartbeat of runner `holder`: extends its own row and the lease of every job it
        runs; returns the ids of those jobs (one it ran and that is missing was taken over)."""
        now = self.db.NOW
        with self.transaction() as db:
            db.execute(f"INSERT INTO runners (holder, started, heartbeat, expires) VALUES (?,{now},{now},{now}+?) "
                       "ON CONFLICT (holder) DO UPDATE SET heartbeat=excluded.heartbeat, expires=excluded.expires",
                       (holder, seconds))
            db.execute(f"DELETE FROM runners WHERE expires < {now} - 86400")  # gone for a day: forgotten
            rows = db.execute(f"UPDATE jobs SET heartbeat={now}, lease_expires={now}+? "
                              "WHERE runner=? AND status=? RETURNING id", (seconds, holder, RUNNING)).fetchall()
        return {r[0] for r in rows}

    def end_runner(self, holder: str) -> None:
        """A runner stops (cleanly): it is no longer counted among the live ones."""
        with self.transaction() as db:
            db.execute("DELETE FROM runners WHERE holder=?", (holder,))

    def live_runners(self) -> list[dict[str, Any]]:
        """Runners whose heartbeat is recent: holder, started, heartbeat (database clock, seconds)."""
        return [dict(r) for r in self._rows(f"SELECT holder, started, heartbeat, {self.db.NOW} AS now "
                                            f"FROM runners WHERE expires > {self.db.NOW} ORDER BY started")]

    def leased_elsewhere(self, holder: str, local: str = "") -> list[dict[str, Any]]:
        """Running jobs another runner holds whose lease has expired, or (given `local`, the start of
        the holder ids of this host) that a runner of this host holds: id, runner, expired."""
        expired = f"lease_expires <= {self.db.NOW}"
        return [dict(r) for r in self._rows(
            f"SELECT id, runner, {expired} AS expired FROM jobs WHERE status=? AND runner!=? "
            f"AND ({expired} OR substr(runner, 1, ?) = ?) ORDER BY created",
            (RUNNING, holder, len(local), local))]

    def take_over(self, job_id: str, previous: str, holder: str, seconds: float) -> bool:
        """Take the lease of a running job from runner `previous` (dead, or its lease expired);
        False if another runner was first, or the job has ended meanwhile."""
        now = self.db.NOW
        with self.transaction() as db:
            return db.execute(f"UPDATE jobs SET runner=?, heartbeat={now}, lease_expires={now}+? "
                              "WHERE id=? AND runner=? AND status=?",
                              (holder, seconds, job_id, previous, RUNNING)).rowcount == 1

    def get_job(self, job_id: str, owner: str | None = None) -> dict[str, Any] | None:
        sql, args = "SELECT * FROM jobs WHERE id=?", [job_id]
        if owner is not None:  # what an owner asks for: a deleted job is gone
            sql, args = sql + " AND owner=? AND deleted=0", args + [owner]
        row = self._row(sql, args)
        return _job(row) if row else None

    def list_jobs(self, owner: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM jobs WHERE owner=? AND deleted=0 ORDER BY created DESC LIMIT ?",
                          (owner, limit))
        return [_job(r) for r in rows]

    def shared_job(self, job_id: str | None, token: str) -> dict[str, Any] | None:
        """The job this share token opens (and, given an id, only if it is that job)."""
        if not token:
            return None
        sql, args = "SELECT * FROM jobs WHERE share_token=? AND deleted=0", [token]
        if job_id is not None:
            sql, args = sql + " AND id=?", args + [job_id]
        row = self._row(sql, args)
        return _job(row) if row else None

    # -- recovery links (frontend/history.py) ---------------------------------

    def set_recovery(self, owner: str, token_hash: str) -> None:
        """The owner's recovery link, replacing the one it had (which then opens nothing)."""
        with self.transaction() as db:
            db.execute("DELETE FROM recovery_links WHERE owner=?", (owner,))
            db.execute("INSERT INTO recovery_links (token_hash, owner, created) VALUES (?,?,?)",
                       (token_hash, owner, time.time()))

    def recovery_owner(self, token_hash: str) -> str | None:
        row = self._row("SELECT owner FROM recovery_links WHERE token_hash=?", (token_hash,))
        return row[0] if row else None

    def recovery_made(self, owner: str) -> float | None:
        """When the owner's recovery link was made (None: it has none)."""
        row = self._row("SELECT created FROM recovery_links WHERE owner=?", (owner,))
        return row[0] if row else None

    def revoke_recovery(self, owner: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM recovery_links WHERE owner=?", (owner,))

    def move_jobs(self, from_owner: str, to_owner: str) -> int:
        """Give every job of `from_owner` to `to_owner` (a browser joining its owner's history)."""
        with self.transaction() as db:
            return db.execute("UPDATE jobs SET owner=? WHERE owner=?", (to_owner, from_owner)).rowcount

    def mark_deleted(self, job_id: str) -> None:
        """Hide the job for good and drop its events (its files are removed by the caller)."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET deleted=1, share_token=NULL, name='' WHERE id=?", (job_id,))
            db.execute("DELETE FROM events WHERE job_id=?", (job_id,))

    def finished_before(self, cutoff: float, limit: int = 100) -> list[str]:
        """Ids of jobs not deleted that ended before `cutoff` (a time), the oldest first."""
        rows = self._rows("SELECT id FROM jobs WHERE deleted=0 AND finished IS NOT NULL AND finished<? "
                          "ORDER BY finished LIMIT ?", (cutoff, limit))
        return [r[0] for r in rows]

    def last_message(self, job_id: str) -> str:
        """The agent's last message (its summary of the run), or ''."""
        row = self._row("SELECT event FROM events WHERE job_id=? AND type='message' "
                        "ORDER BY seq DESC LIMIT 1", (job_id,))
        return (json.loads(row[0]).get("data") or {}).get("text", "") if row else ""

    def cancels_requested(self) -> set[str]:
        """Running jobs whose cancel was asked for (through any process): one small query for all."""
        return {row[0] for row in self._rows("SELECT id FROM jobs WHERE status=? AND cancel_requested=1", (RUNNING,))}

    def any_queued(self) -> bool:
        """Is a job queued? (Read without locks: it sees a queued row a claim skipped as locked.)"""
        return self._row("SELECT EXISTS (SELECT 1 FROM jobs WHERE status=?)", (QUEUED,))[0] == 1

    def jobs_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(statuses))
        rows = self._rows(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created", statuses)
        return [_job(r) for r in rows]

    def count_active(self, owner: str | None = None, address: str | None = None) -> int:
        """Queued and running jobs: everybody's, one owner's, or the anonymous visitors' of one address."""
        sql, args = f"SELECT COUNT(*) FROM jobs WHERE status IN ({','.join('?' * len(ACTIVE))})", sorted(ACTIVE)
        if owner is not None:
            sql, args = sql + " AND owner=?", args + [owner]
        if address is not None:
            sql, args = sql + " AND address=? AND owner LIKE ?", args + [address, ANONYMOUS + "%"]
        return self._row(sql, args)[0]

    def active_counts(self, owner: str, address: str) -> tuple[int, int, int]:
        """Queued and running jobs (everybody's, `owner`'s, the anonymous visitors' of `address`),
        in one query: what admitting a job looks at."""
        row = self._row("SELECT COUNT(*), COALESCE(SUM(CASE WHEN owner=? THEN 1 ELSE 0 END), 0), "
                        "COALESCE(SUM(CASE WHEN address=? AND owner LIKE ? THEN 1 ELSE 0 END), 0) "
                        f"FROM jobs WHERE status IN ({','.join('?' * len(ACTIVE))})",
                        [owner, address, ANONYMOUS + "%", *sorted(ACTIVE)])
        return int(row[0]), int(row[1]), int(row[2])

    def queue_position(self, job: dict[str, Any]) -> int | None:
        """1 for the next job to start; None unless queued."""
        if job["status"] != QUEUED:
            return None
        ahead = self._row("SELECT COUNT(*) FROM jobs WHERE status=? AND created<?", (QUEUED, job["created"]))[0]
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
        with self.transaction() as db:
            changed = db.execute(sql, args).rowcount == 1
            if changed and "status" in fields:  # viewers elsewhere learn that the job ended
                self.db.notify(db, EVENTS, job_id)
        return changed

    # -- events -------------------------------------------------------------

    def append_event(self, job_id: str, event: dict[str, Any]) -> int:
        """Store one event under the job's next sequence number; returns it."""
        with self.transaction() as db:
            seq = db.execute("UPDATE jobs SET last_seq=last_seq+1 WHERE id=? RETURNING last_seq",
                             (job_id,)).fetchone()[0]
            stored = dict(event, seq=seq)
            db.execute("INSERT INTO events (job_id, seq, type, event) VALUES (?,?,?,?)",
                       (job_id, seq, str(stored.get("type", "raw")),
                        json.dumps(stored, ensure_ascii=False, separators=(",", ":"), default=str)))
            self.db.notify(db, EVENTS, job_id)
        return seq

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[tuple[int, str, str]]:
        """(seq, type, event JSON) for events with seq > after, oldest first."""
        return [tuple(r) for r in self._rows(
            "SELECT seq, type, event FROM events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?",
            (job_id, after, limit))]

    def iter_events(self, job_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
        while batch := self.events_after(job_id, after):
            for _seq, _type, text in batch:
                yield json.loads(text)
            after = batch[-1][0]

    def recent_events(self, job_id: str, max_events: int, max_bytes: int) -> list[dict[str, Any]]:
        """The job's last events, oldest first: at most `max_events`, and at most `max_bytes` of them
        in characters as stored (summed in the database: only what is kept is read here)."""
        sizes = self._rows("SELECT seq, length(event) FROM events WHERE job_id=? "
                           "ORDER BY seq DESC LIMIT ?", (job_id, max_events))
        first, total = None, 0
        for seq, size in sizes:
            total += size
            if total > max_bytes:
                break
            first = seq
        return [] if first is None else list(self.iter_events(job_id, after=first - 1))

    def last_event(self, job_id: str, type: str) -> dict[str, Any] | None:
        """The job's latest event of one type (e.g. its token usage so far)."""
        row = self._row("SELECT event FROM events WHERE job_id=? AND type=? ORDER BY seq DESC LIMIT 1",
                        (job_id, type))
        return json.loads(row[0]) if row else None

    def progress(self, job_ids: list[str]) -> dict[str, tuple[int, str]]:
        """job id -> (last_seq, status) for many jobs in one query (the broadcaster's poll)."""
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        rows = self._rows(f"SELECT id, last_seq, status FROM jobs WHERE id IN ({marks})", job_ids)
        return {r[0]: (r[1], r[2]) for r in rows}


def _job(row: Any) -> dict[str, Any]:
    job = dict(row)
    for k in _JSON_FIELDS:
        job[k] = json.loads(job[k])
    return job
