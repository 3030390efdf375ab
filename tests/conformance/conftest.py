"""Every backend must pass the conformance suite (agent_sandbox.testing, collected
here by the import below), each in turn: `backend` is each of tests/backends.py."""

from __future__ import annotations

import pytest

from agent_sandbox.testing import *  # noqa: F403 (the suite is collected in this folder; its fixtures)
from agent_sandbox.testing.fixtures import default_leftovers
from tests import backends
from tests.backends import *  # noqa: F403 (`backend`: each backend in turn)

# Not overridden: `unenforced_limits` and `platform_limits` keep their defaults (none, nothing to do)
# on every backend. Modal takes no process count or disk size for Sandboxes, but the agent holds them
# (agent/command_limits.py), with the emulator's own generous limits giving no help.


@pytest.fixture
def expected_environment(request, backend) -> str:
    return backends.BACKENDS[backend.name][1]


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
