"""Every backend must pass the conformance suite (agent_sandbox.testing, collected
here by the import below), each in turn: `backend` is each of tests/backends.py."""

from __future__ import annotations

import pytest

from agent_sandbox.testing import *  # noqa: F403 (the suite is collected in this folder; its fixtures)
from agent_sandbox.testing.fixtures import default_leftovers
from tests import backends
from tests.backends import *  # noqa: F403 (`backend`: each backend in turn)

@pytest.fixture
def expected_environment(request, backend) -> str:
    return backends.BACKENDS[backend.name][1]


@pytest.fixture
def unenforced_limits(backend) -> set[str]:
    """Modal takes no process count or disk size for Sandboxes (the emulator's own limits stand in)."""
    return {"max_processes", "disk_mb"} if backend.name == "modal" else set()


@pytest.fixture
def host_leftovers(backend):
    """What a run may leave on the host; on Modal, the emulator's folders of all its sandboxes
    (only this session uses it)."""
    if backend.name != "modal":
        return default_leftovers
    from tests.modal_support import shared_emulator

    root = shared_emulator().folder / "state" / "sandboxes"
    return lambda job_id: {str(p) for p in root.iterdir()} | {
        line.split()[1] for line in open("/proc/mounts").read().splitlines() if f"{root}/" in line}


@pytest.fixture
def platform_limits(backend):
    """Set the platform's own per-sandbox limits to a run's, for backends where the run
    cannot pass them: Modal takes no process count or disk size for Sandboxes (the run
    reports them as not enforced), so the emulator's own limits stand in, as Modal's
    would. A no-op elsewhere; restored after the test."""
    changed = []

    def apply(limits) -> None:
        if backend.name != "modal":
            return
        from tests.modal_support import shared_emulator

        emulator = shared_emulator()
        if not changed:
            changed.append((emulator, emulator.state()["sandbox_limits"]))
        emulator.admin("POST", "/emulator/limits", {"sandbox_max_processes": limits.max_processes,
                                                    "sandbox_disk_mb": limits.disk_mb})

    yield apply
    for emulator, before in changed:
        emulator.admin("POST", "/emulator/limits", {"sandbox_max_processes": before["max_processes"],
                                                    "sandbox_disk_mb": before["disk_mb"]})
