"""The two databases the job store runs on: SQLite (one file, the default) and PostgreSQL.

The store (store.py) writes one SQL for both, with `?` placeholders; what
differs between them is said here, once:
- a few spellings (`REAL`, `WITHOUT ROWID`, `SKIP_LOCKED`, `NOW`), which the
  migrations and queries put in with f-strings;
- how connections are kept: one per thread on SQLite; on PostgreSQL a small
  pool, a connection lent to a thread for one call (and to the calls nested
  in it, so a read inside a transaction is part of that transaction);
- how a write transaction is taken: BEGIN IMMEDIATE under one lock on SQLite
  (readers never wait), an ordinary one on PostgreSQL, whose row locks and
  `SKIP LOCKED` let several processes on several hosts write at once;
- how other processes hear that something changed: NOTIFY, heard by one
  LISTEN connection per process, on PostgreSQL; SQLite has no such thing,
  so its readers poll.

Time in leases is the database's clock (`NOW`), so hosts whose clocks differ
agree on when a lease has expired.
"""

from __future__ import annotations

import logging
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_LOCK = 7_345_001      # PostgreSQL advisory lock: one process migrates at a time
ADMISSION_LOCK = 7_345_002   # ...and admits a job at a time, so the caps hold across processes
CONNECT_TIMEOUT = 10         # seconds: an unreachable database fails a request, not hangs it for minutes


class DatabaseUnavailable(Exception):
    """The database cannot be reached (said in one line, without a password)."""


class SQLite:
    name = "sqlite"
    REAL = "REAL"
    WITHOUT_ROWID = " WITHOUT ROWID"
    SKIP_LOCKED = ""  # one writer at a time: nothing to skip
    NOW = "((julianday('now') - 2440587.5) * 86400.0)"
    notices = False

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()

    def describe(self) -> str:
        return str(self.path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        yield db

    @contextmanager
    def transaction(self, *locks: int) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): committed when the
        block ends, rolled back if it raises. Readers in other processes never wait;
        there is one writer at a time, so `locks` have nothing more to keep apart."""
        with self.connect() as db, self._write_lock:
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

    def schema_version(self, db: sqlite3.Connection) -> int:
        return db.execute("PRAGMA user_version").fetchone()[0]

    def set_schema_version(self, db: sqlite3.Connection, version: int) -> None:
        db.execute(f"PRAGMA user_version={int(version)}")

    def notify(self, db: sqlite3.Connection, channel: str, payload: str) -> None:
        """Nobody can listen: other processes poll."""

    def close(self) -> None:
        pass  # each thread's connection closes with its thread

    def on_notice(self, channel: str, callback: Callable[[str | None], None]) -> bool:
        return False


class Row(tuple):
    """A PostgreSQL result row read by position, by name, or whole with dict(): as sqlite3.Row."""

    def __new__(cls, values, index: dict[str, int]):
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):
        return tuple.__getitem__(self, self._index[key] if isinstance(key, str) else key)

    def keys(self):
        return self._index.keys()


def _row_maker(cursor):
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


_PLACEHOLDER = re.compile(r"\?")


class PostgreSQLConnection:
    """A pooled psycopg connection that takes the store's `?` placeholders."""

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql: str, args=()):
        assert "%" not in sql, "a literal % must be passed as an argument"
        return self.raw.execute(_PLACEHOLDER.sub("%s", sql), tuple(args))


class PostgreSQL:
    name = "postgresql"
    REAL = "DOUBLE PRECISION"
    WITHOUT_ROWID = ""
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    NOW = "(extract(epoch from clock_timestamp())::float8)"
    notices = True

    def __init__(self, url: str, connections: int = 8):
        import psycopg  # only when PostgreSQL is used

        self.psycopg = psycopg
        self.url = url
        self._idle: queue.LifoQueue[PostgreSQLConnection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(connections)
        self._local = threading.local()
        self._listeners: dict[str, list[Callable[[str | None], None]]] = {}
        self._listening = threading.Lock()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    def describe(self) -> str:
        """The database without its password (this goes to logs)."""
        info = self.psycopg.conninfo.conninfo_to_dict(self.url)
        return (f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', 5432)}"
                f"/{info.get('dbname', '')}")

    def _open(self) -> PostgreSQLConnection:
        try:
            return PostgreSQLConnection(self.psycopg.connect(self.url, autocommit=True, row_factory=_row_maker,
                                                             application_name="agent-sandbox-web",
                                                             connect_timeout=CONNECT_TIMEOUT))
        except self.psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())[:300]
            raise DatabaseUnavailable(f"cannot reach the database {self.describe()}: {reason}") from None

    @contextmanager
    def connect(self) -> Iterator[PostgreSQLConnection]:
        """A connection for this thread's call, and the calls nested in it (the same one)."""
        held = getattr(self._local, "db", None)
        if held is not None:
            yield held
            return
        with self._slots:
            try:
                db = self._idle.get_nowait()
            except queue.Empty:
                db = self._open()
            self._local.db = db
            try:
                yield db
            finally:
                self._local.db = None
                if db.raw.closed or db.raw.broken or db.raw.info.transaction_status:
                    db.raw.close()  # the server went away, or a transaction was left open: not lent again
                else:
                    self._idle.put(db)

    @contextmanager
    def transaction(self, *locks: int) -> Iterator[PostgreSQLConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises.
        `locks` (advisory, held until the end) serialise what row locks cannot, such as
        counting jobs before adding one."""
        with self.connect() as db, db.raw.transaction():
            for lock in locks:
                db.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
            yield db

    def schema_version(self, db: PostgreSQLConnection) -> int:
        db.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))  # other processes wait here
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def set_schema_version(self, db: PostgreSQLConnection, version: int) -> None:
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def notify(self, db: PostgreSQLConnection, channel: str, payload: str) -> None:
        """Tell every listening process; delivered when (and only if) the transaction commits."""
        db.execute("SELECT pg_notify(?, ?)", (channel, payload))

    def on_notice(self, channel: str, callback: Callable[[str | None], None]) -> bool:
        """Call `callback(payload)` for each NOTIFY on `channel` (from a thread of its own), and
        `callback(None)` each time listening (re)starts: what was said meanwhile is lost, so
        the listener reads what it needs from the database again."""
        with self._listening:
            self._listeners.setdefault(channel, []).append(callback)
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="db-listener", daemon=True)
                self._listener.start()
        return True

    def close(self) -> None:
        self._stop.set()
        while not self._idle.empty():
            self._idle.get_nowait().raw.close()

    def _listen(self) -> None:
        listening: set[str] = set()
        while not self._stop.is_set():
            try:
                with self.psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                          application_name="agent-sandbox-web listener") as raw:
                    listening.clear()
                    while not self._stop.is_set():
                        self._listen_to_new_channels(raw, listening)
                        for notice in raw.notifies(timeout=1.0):
                            self._tell(notice.channel, notice.payload)
            except self.psycopg.Error as exc:
                log.warning("listening for database notices: %s; trying again in 1 s", exc)
                self._stop.wait(1.0)

    def _listen_to_new_channels(self, raw, listening: set[str]) -> None:
        with self._listening:
            channels = [c for c in self._listeners if c not in listening]
        for channel in channels:
            raw.execute(f'LISTEN "{channel}"')  # a name of ours, never a user's
            listening.add(channel)
            self._tell(channel, None)

    def _tell(self, channel: str, payload: str | None) -> None:
        with self._listening:
            callbacks = list(self._listeners.get(channel, ()))
        for callback in callbacks:
            try:
                callback(payload)
            except Exception:
                log.exception("a database notice's listener failed")


def open_database(target: Any, connections: int = 8) -> SQLite | PostgreSQL:
    """A `postgresql://` (or `postgres://`) URL, or the path of a SQLite file."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return PostgreSQL(target, connections)
    return SQLite(Path(target))
