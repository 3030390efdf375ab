"""The local backend as a normal user runs it: no root, so no cgroups and no mounts.

The CLI runs as an unprivileged uid (setpriv) with the system's Python and a
copy of agent_sandbox it can read. The jail still works; processes are capped
by RLIMIT_NPROC in the jail's own user namespace; memory and disk say, in
run_started and in warnings, that they are not enforced; without bubblewrap,
AGENT_SANDBOX_ALLOW_UNSANDBOXED=1 still runs (only root is refused that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent_sandbox import events as ev
from agent_sandbox.testing.containment import FORK_BOMB
from tests.conftest import REPO

USER = 10002
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def home():
    """A folder the unprivileged user owns, with a copy of agent_sandbox in it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user (CI runs the suite as root)")
    assert os.access(SYSTEM_PYTHON, os.X_OK), f"{SYSTEM_PYTHON} is missing (Debian's python3 package)"
    folder = Path(tempfile.mkdtemp(prefix="agent-sandbox-user-"))
    shutil.copytree(REPO / "agent_sandbox", folder / "src" / "agent_sandbox",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "files").mkdir()
    (folder / "files" / "data.csv").write_text("a,b\n1,2\n")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, USER, USER, follow_symlinks=False)
    os.chmod(folder, 0o700)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def cli_command(home: Path, name: str, actions: list[dict], **env: str) -> tuple[list[str], dict[str, str]]:
    environ = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(home / "src"),
               "AGENT_SCRIPT": json.dumps(actions), "AGENT_SANDBOX_SCRATCH": str(home), **env}
    return ([shutil.which("setpriv") or "setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups",
             SYSTEM_PYTHON, "-m", "agent_sandbox", "run", "--model", "scripted", "--json",
             "--my-files", "", "--workdir", str(home / f"work-{name}"),
             "--output", str(home / f"out-{name}"), str(home / "files" / "data.csv")], environ)


def run_cli(home: Path, name: str, actions: list[dict], **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    argv, environ = cli_command(home, name, actions, **env)
    proc = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, events


def test_a_normal_user_keeps_a_working_jail_and_is_told_what_is_not_enforced(home):
    proc, events = run_cli(home, "jail", [{"kind": "shell", "command": "echo uid=$(id -u)"},
                                          {"kind": "python", "code": FORK_BOMB}],
                           AGENT_SANDBOX_MAX_PROCESSES="24")
    assert proc.returncode == 0, proc.stderr
    text = "".join(e["data"].get("text", "") for e in events if e["type"] == ev.OUTPUT)
    assert f"uid={USER}" in text
    forks = json.loads(next(line for line in text.splitlines() if line.startswith("FORKS "))[6:])
    assert forks["error"] == "EAGAIN" and 0 < forks["started"] < 24
    enforced = next(e for e in events if e["type"] == ev.RUN_STARTED)["data"]["limits_enforced"]
    assert "RLIMIT_NPROC" in enforced["max_processes"]
    assert enforced["memory_mb"].startswith("not enforced") and enforced["disk_mb"].startswith("not enforced")
    warnings = " ".join(e["data"]["message"] for e in events if e["type"] == ev.WARNING)
    assert "memory_mb" in warnings and "disk_mb" in warnings
    assert (home / "out-jail" / "manifest.json").exists()
    assert not [p for p in home.iterdir() if p.name.startswith("agent-")], "the run's folder is gone"


def test_a_normal_user_may_still_run_without_a_sandbox_when_allowed(home):
    proc, events = run_cli(home, "bare", [{"kind": "shell", "command": "echo ran-bare"}],
                           PATH="/nonexistent", AGENT_SANDBOX_ALLOW_UNSANDBOXED="1")
    assert proc.returncode == 0, proc.stderr
    assert any("without a sandbox" in e["data"].get("message", "") for e in events if e["type"] == ev.WARNING)
    assert "ran-bare" in "".join(e["data"].get("text", "") for e in events if e["type"] == ev.OUTPUT)


@pytest.mark.parametrize("sandboxed", [True, False], ids=["jail", "bare"])
def test_sigkill_of_a_normal_users_cli_leaves_no_process(home, sandboxed):
    """No cgroup to kill here: the jail dies with bubblewrap's parent-death signal and the
    agent's lifeline; without bubblewrap the lifeline alone ends the agent and its commands."""
    from agent_sandbox.agent.process_tree import descendants
    from tests.leftovers import in_namespaces, pid_namespaces, wait_until
    env = {} if sandboxed else {"PATH": "/nonexistent", "AGENT_SANDBOX_ALLOW_UNSANDBOXED": "1"}
    argv, environ = cli_command(home, "killed", [{"kind": "shell", "command": "echo ready; sleep 300"}], **env)
    proc = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line)["type"] == ev.OUTPUT and "ready" in line:
                break
        started = descendants(proc.pid)
        jail = pid_namespaces(started) - pid_namespaces([os.getpid()])
        assert len(started) >= 2 and bool(jail) == sandboxed   # the agent and its command at least
    finally:
        proc.kill()
        proc.wait()

    def gone() -> bool:
        alive = [pid for pid in started if _alive(pid)]
        return not alive and not in_namespaces(jail)

    wait_until(gone, 10, "everything the CLI started died with it")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False
