"""A throwaway PostgreSQL cluster for the tests and benchmarks, started and stopped like dockerd.

Debian's `postgresql` package (the Makefile installs it) gives the binaries;
`initdb` makes a cluster in a temporary folder and `pg_ctl` runs it on a free
port of 127.0.0.1, with durability off (fsync, synchronous commit: a test
database never outlives its test run). PostgreSQL refuses to run as root, so
as root both run as the `postgres` user (`runuser`), in a folder it owns.
Each test gets a database of its own (`cluster.new_database()`).

    with PostgresCluster() as cluster:
        url = cluster.new_database()   # postgresql://postgres@127.0.0.1:PORT/test_1
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

MISSING = ("PostgreSQL is not installed (Debian: apt-get install postgresql; `make install` does it): "
           "initdb and pg_ctl were not found on PATH or in /usr/lib/postgresql/*/bin")


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian version), or None."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                     if Path(p).parent.name.isdigit() else 0)
    folders = [f for f in folders if os.access(Path(f) / "pg_ctl", os.X_OK) and os.access(Path(f) / "initdb", os.X_OK)]
    return Path(folders[-1]) if folders else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


class PostgresCluster:
    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or binaries()
        if self.bindir is None:
            raise FileNotFoundError(MISSING)
        self.port = _free_port()
        self.root: Path | None = None
        self._names = itertools.count(1)
        self.as_root = os.geteuid() == 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=True, timeout=120, **kw)

    def start(self) -> PostgresCluster:
        base = Path(tempfile.gettempdir())
        if self.as_root and not _reachable_by_others(base):
            base = Path("/tmp")  # the postgres user must reach its folder
        self.root = Path(tempfile.mkdtemp(prefix="agent-sandbox-pg-", dir=base))
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400")
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                      "-o", options, "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{self.log()[-2000:]}") from None
        return self

    def log(self) -> str:
        try:
            return (self.root / "log").read_text(errors="replace")
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # not running (it failed to start)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
