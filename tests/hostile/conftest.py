"""The attack suite of issue 26: each finding run as an attack on real components, its bound
asserted with measured figures (helpers in tests/attack.py). Shared fixtures only, kept generic:
`start_server(**env)` starts a real web server process (tests/web/web_helpers.py) on a free
port in this test's folder, and stops it afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.web_helpers import Server


@pytest.fixture
def start_server(tmp_path):
    servers: list[Server] = []

    def start(root: Path | None = None, **env) -> Server:
        server = Server(root or tmp_path / f"srv{len(servers)}", {k: str(v) for k, v in env.items()})
        servers.append(server)
        return server.start()

    yield start
    for s in servers:
        s.stop()
