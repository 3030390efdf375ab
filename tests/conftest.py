"""Shared test helpers: run a job on a backend and keep every event."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from agent_sandbox.spec import Limits, RunSpec

REPO = Path(__file__).resolve().parent.parent


class Recorder:
    """Collects events with their arrival time (monotonic)."""

    def __init__(self):
        self.events: list[dict] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        with self.lock:
            self.events.append(event)
            self.arrivals.append(time.monotonic())

    def of_type(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]

    def text(self) -> str:
        return json.dumps(self.events)


def make_spec(tmp_path: Path, actions: list[dict], files: dict[str, bytes] | None = None,
              **kwargs) -> RunSpec:
    """A RunSpec for the scripted model; `files` become the workspace."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {"data.csv": b"a,b\n1,2\n"}).items():
        (workspace / name).write_bytes(data)
    # 1 GB of disk: each run reserves its disk on the host up front, and several
    # test sessions share this machine.
    limits = kwargs.pop("limits", None) or Limits(run_timeout=120, command_timeout=60, idle_timeout=60,
                                                  disk_mb=1024)
    env = {"AGENT_SCRIPT": json.dumps(actions), **kwargs.pop("env", {})}
    return RunSpec(job_id=kwargs.pop("job_id", uuid.uuid4().hex[:16]),
                   workspace=workspace, results=tmp_path / "results",
                   model=kwargs.pop("model", "scripted"), env=env, limits=limits, **kwargs)


# The lanes. `make test-fast` runs the tests in none of them: the unit tests, the local
# backend's conformance tests, the web app's tests. A test is in a lane by its marker, else
# by a word of its file's name or of a parameter's id, or by a fixture it uses.
LANES = {   # lane: (words, fixtures)
    "docker": (("docker",), {"docker_backend", "modal_docker_backend"}),
    "modal": (("modal", "emulator"), {"modal_backend", "modal_docker_backend"}),
    "browser": (("browser",), {"browser"}),
    "agent": (("playbook", "llm_agent"), set()),   # whole agent runs on real datasets or SDKs
    "dist": (("distribution",), set()),            # installs the distributions into new venvs
}


def lanes_of(item: pytest.Item) -> set[str]:
    """The lanes a collected test belongs to (none: the fast lane)."""
    words = {Path(str(item.fspath)).stem.lower()}
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
