"""The suite's collection hook and its fixtures, each with the default a conftest may override."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from agent_sandbox.spec import Limits
from agent_sandbox.testing.support import Recorder

SUITE = [Path(__file__).with_name(name) for name in ("conformance.py", "containment.py")]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """The suite, collected once in the folder of each conftest.py that imported this hook
    (pytest calls it for every file of that folder and below)."""
    if file_path.name != "conftest.py":
        return None
    conftest = parent.config.pluginmanager.get_plugin(str(file_path))
    if getattr(conftest, "pytest_collect_file", None) is not pytest_collect_file:
        return None
    return Suite.from_parent(parent, name="agent_sandbox.testing")


class Suite(pytest.Collector):
    """The suite's modules, as children of the conftest's folder: its fixtures (`backend`) reach them."""

    def collect(self):
        return [pytest.Module.from_parent(self, path=path, nodeid=f"{self.nodeid}/{path.name}") for path in SUITE]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def expected_environment() -> str | None:
    return None


@pytest.fixture
def unenforced_limits() -> set[str]:
    return set()


@pytest.fixture
def platform_limits() -> Callable[[Limits], None]:
    return lambda limits: None


@pytest.fixture
def host_leftovers() -> Callable[[str], set[str]]:
    return default_leftovers


def default_leftovers(job_id: str) -> set[str]:
    """Run folders under the temp folder (the local and Docker backends' scratch spaces), mounts
    and cgroups naming the job."""
    root, mark = tempfile.gettempdir(), f"/agent-{job_id}-"
    found = {f"{root}/{name}" for name in os.listdir(root) if f"/{name}".startswith(mark)}
    found |= {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if mark in line}
    for controller in ("memory", "pids"):
        folder = Path("/sys/fs/cgroup", controller, "agent-sandbox")
        if folder.is_dir():
            found |= {str(p) for p in folder.iterdir() if job_id[:40] in p.name}
    return found
