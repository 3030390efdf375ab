"""The backend conformance suite, shipped: any backend proves itself against it with pytest.

A conftest.py of five lines runs the whole suite on a backend (pytest in its folder):

    import pytest
    from agent_sandbox.testing import *  # noqa: F403 (the suite is collected in this folder; its fixtures)
    from my_sandbox import MyBackend

    @pytest.fixture
    def backend():
        return MyBackend()

Each test runs the real agent (its scripted model) in a real sandbox of `backend`
and checks what comes back: events, statuses, outputs, manifest (conformance.py),
and what a hostile command tries and must fail at (containment.py). The same
conftest may override what differs between platforms:

- `expected_environment`: what the agent must detect inside ("local", "docker",
  "modal"; default None: not checked);
- `unenforced_limits`: the sandbox limits the backend may report as "not
  enforced" (default: none; Modal takes no process count or disk size);
- `platform_limits`: sets the platform's own limits to a run's where the run
  cannot pass them (default: nothing to do);
- `host_leftovers`: what a run of a job may leave on the host (default: run
  folders under the temp folder, mounts and cgroups naming the job).

Needs pytest (the library's `test` extra) on the host, and the agent's own
packages wherever the backend runs it.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("agent_sandbox.testing.conformance", "agent_sandbox.testing.containment",
                            "agent_sandbox.testing.support")

from agent_sandbox.testing.fixtures import (  # noqa: E402
                            expected_environment,
                            host_leftovers,
                            platform_limits,
                            pytest_collect_file,
                            recorder,
                            unenforced_limits,
)

__all__ = ["expected_environment", "host_leftovers", "platform_limits", "pytest_collect_file", "recorder",
           "unenforced_limits"]
