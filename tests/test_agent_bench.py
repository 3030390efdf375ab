"""The agent benchmark's harness (bench/agent_tasks.py) against a scripted model server:
each task's reference solution is solved, and a model that does nothing solves none
(its checks can fail). Live figures come from running it with --model and a key."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/agent_tasks.py", "--scripted", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.timeout(1800)   # eleven sandboxed runs; a loaded machine takes minutes
def test_the_harness_solves_every_task_with_its_reference_solution():
    done = bench()
    print(done.stdout)
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(rows) >= 10 and all(row[1] == "yes" for row in rows)
    assert all(int(row[2]) == 2 and int(row[3].replace(",", "")) > 0 for row in rows)   # steps, tokens
    assert re.search(r"^solved (\d+) of \1; tokens [\d,]+; wall [\d.]+s$", done.stdout.splitlines()[-1])


def test_a_model_that_does_nothing_solves_nothing():
    done = bench("--sabotage", "--tasks", "blank_growth,ttest,log_plot,missing_values")
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert done.returncode == 1 and len(rows) == 4 and all(row[1] == "no" for row in rows), done.stdout
