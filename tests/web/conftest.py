"""Fixtures for the web app's tests (helpers in web_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from web_helpers import CHROMIUM_ARGS, Server


@pytest.fixture
def start_server(tmp_path):
    servers: list[Server] = []

    def start(root: Path | None = None, **env) -> Server:
        server = Server(root or tmp_path / f"srv{len(servers)}", {k: str(v) for k, v in env.items()})
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
