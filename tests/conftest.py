"""Shared test helpers: run a job on a backend and keep every event."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_sandbox.testing.support import Recorder, make_spec  # noqa: F401 (the tests import them from here)

REPO = Path(__file__).resolve().parent.parent


# The lanes. `make test-fast` runs the tests in none of them: the unit tests, the local
# backend's conformance tests, the web app's tests. A test is in a lane by its marker, else
# by a word of its file's name or of a parameter's id, or by a fixture it uses.
LANES = {   # lane: (words, fixtures)
    "docker": (("docker",), {"docker_backend", "modal_docker_backend"}),
    "modal": (("modal", "emulator"), {"modal_backend", "modal_docker_backend"}),
    "browser": (("browser",), {"browser"}),
    # whole agent runs on real datasets, or through the real model SDKs
    "agent": (("playbook", "llm_agent", "llm_loop", "llm_relay", "agent_bench"), set()),
    "dist": (("distribution",), set()),            # installs the distributions into new venvs
    "hostile": (("hostile", "abuse"), set()),      # the attack suite: floods, slow clients, big files
    "postgres": (("postgres", "scale"), {"postgres_cluster"}),   # a PostgreSQL cluster, several processes
}


def lanes_of(item: pytest.Item) -> set[str]:
    """The lanes a collected test belongs to (none: the fast lane)."""
    path = Path(str(item.fspath))
    words = {path.stem.lower(), path.parent.name.lower()}   # the folder too: tests/hostile/
    callspec = getattr(item, "callspec", None)
    words |= {str(value).lower() for value in (callspec.params.values() if callspec else ())}
    fixtures = set(getattr(item, "fixturenames", ()))
    return {lane for lane, (keys, names) in LANES.items()
            if item.get_closest_marker(lane) or fixtures & names or any(k in w for k in keys for w in words)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for lane in lanes_of(item) - {m.name for m in item.iter_markers()}:
            item.add_marker(lane)


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
