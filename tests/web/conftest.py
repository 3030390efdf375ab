"""Fixtures for the web app's tests (helpers in web_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from web_helpers import CHROMIUM_ARGS, Server


@pytest.fixture
def start_server(tmp_path):
    servers: list[Server] = []

    def start(root: Path | None = None, open_files: int | None = None, kind: type[Server] = Server, **env) -> Server:
        server = kind(root or tmp_path / f"srv{len(servers)}", {k: str(v) for k, v in env.items()}, open_files)
        servers.append(server.start())
        return server

    start.track = servers.append
    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One shared server for the tests that do not need their own settings."""
    s = Server(tmp_path_factory.mktemp("web"), {}).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def browser():
    """One real Chromium for the whole session (each test opens its own contexts)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster for the session (tests/postgres.py), like dockerd."""
    from tests.postgres import MISSING, PostgresCluster, binaries

    if binaries() is None:
        pytest.skip(MISSING)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where a test's job store lives: a SQLite file, then a fresh PostgreSQL database (its URL)."""
    if request.param == "sqlite":
        return tmp_path / "jobs.sqlite3"
    return request.getfixturevalue("postgres_cluster").new_database()
