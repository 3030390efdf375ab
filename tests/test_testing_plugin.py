"""The conformance suite as a third party runs it: agent_sandbox.testing and a five-line conftest.py
in a folder of its own, plain pytest, a backend of its own (here: the local one under another name)."""

from __future__ import annotations

import os
import subprocess
import sys

CONFTEST = '''\
import pytest
from agent_sandbox.testing import *  # noqa: F403
from my_sandbox import MyBackend

@pytest.fixture
def backend():
    return MyBackend()
'''

MY_SANDBOX = '''\
from agent_sandbox.backends.local import LocalBackend

class MyBackend(LocalBackend):
    name = "mine"
'''


def run_pytest(folder, *args):
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTEST_ADDOPTS": ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)


def test_a_five_line_conftest_runs_the_suite_on_a_backend_of_ones_own(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "my_sandbox.py").write_text(MY_SANDBOX)
    listed = run_pytest(tmp_path, "--collect-only")
    names = [line for line in listed.stdout.splitlines() if "::test_" in line]
    assert len(names) >= 20, listed.stdout[-2000:]
    assert any("conformance.py::test_cancel_stops_the_sandbox" in n for n in names)
    assert any("containment.py::test_secrets_are_not_readable_from_any_process" in n for n in names)
    run = run_pytest(tmp_path, "-k", "streams_events or missing_workspace or forge_host_events or agent_failure")
    assert run.returncode == 0, run.stdout[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("4 passed"), run.stdout[-1000:]


def test_a_failing_backend_fails_the_suite(tmp_path):
    """The suite proves something: a backend that loses the agent's exit status is caught."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "my_sandbox.py").write_text(MY_SANDBOX + '''
    def sandbox(self, spec):
        sandbox = super().sandbox(spec)
        sandbox.outputs = lambda: (_ for _ in ()).throw(OSError("outputs lost"))
        return sandbox
''')
    run = run_pytest(tmp_path, "-k", "outputs_come_back_with_manifest")
    assert run.returncode == 1 and "1 failed" in run.stdout.strip().splitlines()[-1], run.stdout[-2000:]
