"""Shared test helpers: run a job on a backend and keep every event."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_sandbox.testing.support import Recorder, make_spec  # noqa: F401 (the tests import them from here)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session", autouse=True)
def sweep_run_leftovers_at_the_end():
    """Some tests kill a server mid-run on purpose. What its runs left (capped
    filesystems that hold reserved disk, cgroups) is swept here as a restarted server
    sweeps it; only runs whose owning process is gone are touched."""
    yield
    import os
    import tempfile

    from agent_sandbox.backends.local import sweep_run_leftovers
    sweep_run_leftovers(os.environ.get("AGENT_SANDBOX_SCRATCH") or tempfile.gettempdir())
