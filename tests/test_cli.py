"""The host CLI, end to end: real subprocess, real local sandbox, scripted model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


def cli(*args, script=None, timeout=120):
    env = dict(os.environ)
    if script is not None:
        env["AGENT_SCRIPT"] = json.dumps(script)
    return subprocess.run([sys.executable, "-m", "agent_sandbox", "run", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_run_prints_live_log_and_leaves_results(tmp_path):
    data = tmp_path / "measurements.csv"
    data.write_text("t,v\n1,2\n")
    script = [{"kind": "shell", "thought": "count rows", "command": "wc -l /workspace/measurements.csv"},
              {"kind": "python", "code": "open('/outputs/summary.txt','w').write('rows=1')"},
              {"kind": "finish", "message": "all done"}]
    proc = cli("--model", "scripted", "--output", str(tmp_path / "out"), str(data), script=script)
    assert proc.returncode == 0, proc.stderr
    assert "[1] count rows" in proc.stdout and "$ wc -l /workspace/measurements.csv" in proc.stdout
    assert "2 /workspace/measurements.csv" in proc.stdout and "all done" in proc.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["summary.txt"]
    assert (tmp_path / "out" / "summary.txt").read_text() == "rows=1"


def test_json_mode_prints_events(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    proc = cli("--json", "--model", "scripted", "--output", str(tmp_path / "out"), str(data), script=[])
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert "run_started" in types and "run_finished" in types and types[-1] == "result"


def test_failures_exit_non_zero_with_one_line_reason(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    proc = cli("--model", "scripted", "--output", str(tmp_path / "o1"), str(data),
               script=[{"kind": "finish", "status": "failed", "message": "bad data"}])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: run failed: bad data"

    proc = cli("--output", str(tmp_path / "o2"), str(tmp_path / "missing.csv"))
    assert proc.returncode == 2 and "not a file" in proc.stderr

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    proc = cli("--output", str(tmp_path / "full"), str(data))
    assert proc.returncode == 2 and "not empty" in proc.stderr

    proc = cli("--backend", "nope", "--output", str(tmp_path / "o3"), str(data))
    assert proc.returncode == 2 and "unknown backend" in proc.stderr


def test_the_workdir_variable_and_its_deprecated_name(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    for variable, warned in (("AGENT_SANDBOX_WORKDIR", False), ("AGENT_SANDBOX_OUTPUTS", True)):
        workdir = tmp_path / variable
        env = {**os.environ, variable: str(workdir), "AGENT_SCRIPT": "[]"}
        env.pop("AGENT_SANDBOX_WORKDIR" if warned else "AGENT_SANDBOX_OUTPUTS", None)
        proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--model", "scripted", "--output",
                               str(tmp_path / f"out-{variable}"), str(data)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        [job] = (workdir / "uploaded_files").iterdir()
        assert (job / "d.csv").read_text() == "x\n"
        assert ("AGENT_SANDBOX_OUTPUTS is deprecated; set AGENT_SANDBOX_WORKDIR instead" in proc.stderr) == warned


# -- stopping the CLI ----------------------------------------------------------

PARTIAL_THEN_WAIT = [{"kind": "python", "code": "open('/outputs/partial.txt', 'w').write('half done')"},
                     {"kind": "shell", "command": "echo ready; sleep 300"}]


def start_cli(tmp_path, script):
    """The CLI in a process group of its own (as a shell runs it), up to the agent's "ready"."""
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    env = {**os.environ, "AGENT_SCRIPT": json.dumps(script)}
    proc = subprocess.Popen([sys.executable, "-m", "agent_sandbox", "run", "--json", "--model", "scripted",
                             "--output", str(tmp_path / "out"), str(data)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "output" and "ready" in event["data"]["text"]:
            return proc
    raise AssertionError(f"the agent never got ready: {proc.stderr.read()}")


def running_jail(tmp_path) -> tuple[str, set[str]]:
    """The run's sandbox id, as the manifest says while it runs, and its jail's PID namespaces."""
    from tests.leftovers import in_cgroup, pid_namespaces
    if os.geteuid() != 0:
        pytest.skip("the jail's cgroup (its sandbox id) needs root")
    run = json.loads((tmp_path / "out" / "manifest.json").read_text())["run"]
    assert run["status"] == "running" and run["backend"] == "local" and run["sandbox_id"]
    pids = in_cgroup(run["sandbox_id"])
    namespaces = pid_namespaces(pids) - pid_namespaces([os.getpid()])
    assert len(pids) >= 3 and namespaces, "the agent, its shell and sleep run in the jail"
    return run["sandbox_id"], namespaces


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_sandbox_and_keeps_the_partial_outputs(tmp_path, sig):
    from tests.leftovers import in_cgroup, in_namespaces
    proc = start_cli(tmp_path, PARTIAL_THEN_WAIT)
    sandbox_id, namespaces = running_jail(tmp_path)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)   # Ctrl-C: the terminal signals the whole foreground group
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == "error: run cancelled: cancelled by the user"
    assert json.loads(out.splitlines()[-1])["data"]["status"] == "cancelled"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    run = manifest["run"]   # what the backend recorded, then what a follow-up needs (instructions, ...)
    assert {k: run[k] for k in ("status", "reason", "backend", "sandbox_id")} == {
        "status": "cancelled", "reason": "cancelled by the user", "backend": "local", "sandbox_id": sandbox_id}
    assert run["model"] == "scripted" and run["inputs"]
    assert [f["path"] for f in manifest["files"]] == ["partial.txt"]
    assert (tmp_path / "out" / "partial.txt").read_text() == "half done"
    assert in_cgroup(sandbox_id) == [] and in_namespaces(namespaces) == []


def test_sigkill_of_the_cli_leaves_no_process_behind(tmp_path):
    from tests.leftovers import in_cgroup, in_namespaces, wait_until
    proc = start_cli(tmp_path, PARTIAL_THEN_WAIT)
    sandbox_id, namespaces = running_jail(tmp_path)
    proc.kill()
    proc.wait()
    wait_until(lambda: not in_cgroup(sandbox_id) and not in_namespaces(namespaces), 10,
               "the jail dies with the CLI")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["run"]["status"] == "running", "the folder says the run never finished, and where it ran"


def test_a_cli_killed_while_its_jail_starts_leaves_no_agent(tmp_path):
    """Killed at any moment of the jail's start (before bubblewrap asked for its parent-death
    signal, while it sets up, as the agent starts): no agent or command survives it, and the
    next start's sweep ends whatever bubblewrap itself left in the run's cgroup."""
    from agent_sandbox.backends import get_backend
    from tests.leftovers import in_cgroup, wait_until
    if os.geteuid() != 0:
        pytest.skip("the jail's cgroup (its sandbox id) needs root")
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    env = {**os.environ, "AGENT_SCRIPT": json.dumps([{"kind": "shell", "command": "echo ready; sleep 300"}])}
    for n, delay in enumerate((0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4)):
        proc = subprocess.Popen([sys.executable, "-m", "agent_sandbox", "run", "--json", "--model", "scripted",
                                 "--output", str(tmp_path / f"out{n}"), str(data)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        sandbox_id = next(json.loads(line)["data"]["sandbox_id"] for line in proc.stdout
                          if '"sandbox_id"' in line)
        time.sleep(delay)
        proc.kill()
        proc.wait()

        wait_until(lambda run=sandbox_id: all(_comm(pid) == "bwrap" for pid in in_cgroup(run)), 10,
                   f"the agent dies with the CLI killed {delay}s into the start (only bubblewrap may be left)")
        get_backend("local").sweep_orphans()
        assert in_cgroup(sandbox_id) == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
