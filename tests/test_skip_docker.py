"""AGENT_SANDBOX_SKIP_DOCKER=1 does what the README says: `make test` sets no Docker up and
every Docker test is skipped, saying why, whether or not an engine answers here."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO

DOCKER_TESTS = ["tests/test_docker_backend.py", "tests/test_modal_emulator_docker.py",
                "tests/conformance"]


def test_skip_docker_skips_the_docker_set_up_and_every_docker_test(tmp_path):
    env = {**os.environ, "AGENT_SANDBOX_SKIP_DOCKER": "1", "PYTEST_ADDOPTS": ""}
    make = subprocess.run(["make", "--no-print-directory", "docker-engine"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert make.returncode == 0 and make.stdout == "" and make.stderr == "", "no Docker set-up at all"

    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          f"--basetemp={tmp_path / 'inner'}", "-k", "docker and not (conformance and modal)",
                          *DOCKER_TESTS],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.fullmatch(r"=* ?\d+ skipped(, \d+ deselected)? in [\d.]+s ?=*", summary), summary
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("AGENT_SANDBOX_SKIP_DOCKER=1" in line for line in skips), skips
