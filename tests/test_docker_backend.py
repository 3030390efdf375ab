"""What the Docker backend promises beyond the conformance suite: the container's
lockdown as the engine reports it, its removal however a run ends, and the sweep
of containers a crashed process left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.backends.docker import LABEL
from agent_sandbox.spec import MB, Limits
from tests.conftest import REPO, make_spec
from tests.docker_engine import require_docker

SECRET = "sk-docker-5c4b3a2918"


@pytest.fixture
def docker():
    return require_docker()


def shell(command: str) -> dict:
    return {"kind": "shell", "command": command}


def outputs_text(recorder) -> str:
    return "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))


def when_printed(recorder, marker: str, action):
    """An on_event callback: record every event, call `action()` once when `marker` is printed."""
    done = threading.Event()

    def on_event(event):
        recorder(event)
        if not done.is_set() and event["type"] == ev.OUTPUT and marker in event["data"].get("text", ""):
            done.set()
            action()
    return on_event


def inspect(docker, job_id: str) -> dict:
    [(cid, _)] = docker.containers(f"{LABEL}.job={job_id}")
    return json.loads(docker.cli("inspect", cid).stdout)[0]


def test_container_is_locked_down_as_docker_reports_it(docker, tmp_path, recorder):
    seen = {}
    spec = make_spec(tmp_path, [
        shell("echo inspect-now; sleep 2"),
        shell("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"),
        {"kind": "python", "code": "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                                   "    print('NET-OPEN')\nexcept OSError as e:\n    print('NET-BLOCKED', e)"},
        shell("echo changed > /workspace/data.csv; touch /usr/lib/x; touch /tmp/ok && echo tmp-writable; "
              "echo uid=$(id -u); ls /sys/class/net"),
        shell("head -c 300 /outputs/agent.log"),
    ], secrets={"OPENAI_API_KEY": SECRET},
        limits=Limits(run_timeout=120, command_timeout=60, idle_timeout=60, memory_mb=300, cpu=0.5))
    result = docker.run(spec, when_printed(recorder, "inspect-now",
                                           lambda: seen.update(inspect(docker, spec.job_id))))
    assert result.status == ev.SUCCEEDED, result.reason
    host = seen["HostConfig"]
    assert host["Memory"] == 300 * MB and host["MemorySwap"] == 300 * MB
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == spec.limits.max_processes
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"
    mounts = {m["Destination"]: m for m in seen["Mounts"]}
    assert mounts["/workspace"]["RW"] is False and mounts["/outputs"]["RW"] is True
    # As root, /outputs and /tmp share the run's own capped filesystem.
    assert mounts["/tmp"]["RW"] is True and os.path.dirname(mounts["/tmp"]["Source"]) == os.path.dirname(
        mounts["/outputs"]["Source"])
    labels = seen["Config"]["Labels"]
    assert labels[f"{LABEL}.job"] == spec.job_id and labels[f"{LABEL}.app"] == docker.config.app
    assert labels[f"{LABEL}.owner"] == f"{socket.gethostname()}:{os.getpid()}"
    assert SECRET not in json.dumps(seen)  # neither in the container's env nor its command line

    text = outputs_text(recorder)
    lines = text.splitlines()
    assert str(300 * MB) in lines  # the limit the kernel enforces inside
    assert any(line.startswith("NET-BLOCKED") for line in lines) and "NET-OPEN" not in lines
    assert text.count("Read-only file system") == 2  # the workspace and the root filesystem
    assert (spec.workspace / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert "tmp-writable" in lines and "uid=0" not in lines
    assert "eth0" not in text
    # The agent knew it was in Docker and mirrored its events to /outputs/agent.log;
    # that copy is not brought back (the host has every event already).
    assert '"type": "run_started"' in text or '"type":"run_started"' in text
    assert recorder.of_type(ev.RUN_STARTED)[0]["data"]["environment"] == "docker"
    assert "agent.log" not in {f["path"] for f in result.manifest["files"]}
    assert docker.containers(f"{LABEL}.job={spec.job_id}") == []


def test_network_only_when_asked_for(docker, tmp_path, recorder):
    """Never Docker's bridge (it reaches the host): the opt-in is user-mode networking
    in the container's own namespace (tests/test_netjail.py checks what it reaches)."""
    seen = {}
    spec = make_spec(tmp_path, [shell("echo inspect-now; ls /sys/class/net; sleep 1")], network=True)
    result = docker.run(spec, when_printed(recorder, "inspect-now",
                                           lambda: seen.update(inspect(docker, spec.job_id))))
    assert result.status == ev.SUCCEEDED, result.reason
    assert seen["HostConfig"]["NetworkMode"] == "none"
    assert "tap0" in outputs_text(recorder).split()


@pytest.mark.parametrize("ending", ["cancel", "timeout"])
def test_container_is_removed_however_the_run_ends(docker, tmp_path, recorder, ending):
    cancel = threading.Event()
    during = []

    def seen_running():
        during.extend(docker.containers(f"{LABEL}.job={spec.job_id}"))
        if ending == "cancel":
            cancel.set()

    limits = Limits(run_timeout=5 if ending == "timeout" else 120, command_timeout=60, idle_timeout=60)
    spec = make_spec(tmp_path, [shell("echo waiting; sleep 60")], limits=limits)
    result = docker.run(spec, when_printed(recorder, "waiting", seen_running), cancel)
    assert result.status == (ev.CANCELLED if ending == "cancel" else ev.TIMEOUT)
    assert len(during) == 1
    assert docker.containers(f"{LABEL}.job={spec.job_id}") == []


def test_interrupted_cli_leaves_no_container(docker, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    env = dict(os.environ, AGENT_SCRIPT=json.dumps([shell("echo waiting; sleep 60")]))
    proc = subprocess.Popen([sys.executable, "-m", "agent_sandbox", "run", "--backend", "docker", "--json",
                             "--model", "scripted", "--output", str(tmp_path / "out"), str(data)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    owner = f"{LABEL}.owner={socket.gethostname()}:{proc.pid}"
    try:
        for line in proc.stdout:
            if "waiting" in line:
                break
        assert len(docker.containers(owner)) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    assert docker.containers(owner) == []


def test_sweep_removes_what_a_crashed_process_left(docker, tmp_path):
    # A host process that dies hard (SIGKILL) cannot clean up: its container keeps running.
    spec = make_spec(tmp_path, [shell("echo waiting; sleep 60")])
    code = ("import sys, json; from pathlib import Path\n"
            "from agent_sandbox.backends import get_backend\nfrom agent_sandbox.spec import RunSpec\n"
            f"spec = RunSpec(job_id={spec.job_id!r}, workspace=Path({str(spec.workspace)!r}),"
            f" results=Path({str(spec.results)!r}), model='scripted', env={spec.env!r})\n"
            "get_backend('docker').run(spec, lambda e: print(json.dumps(e), flush=True))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "waiting" in line:
            break
    proc.kill()
    proc.wait()
    job = f"{LABEL}.job={spec.job_id}"
    assert len(docker.containers(job)) == 1, "the crashed process's container is still there"

    # A container of a live process (this one) must survive the sweep.
    live = docker.cli("run", "-d", "--rm", "--network", "none", "--label", f"{LABEL}.app={docker.config.app}",
                      "--label", f"{LABEL}.owner={docker.owner}", docker.config.image, "sleep", "60").stdout.strip()
    try:
        assert docker.sweep_orphans() >= 1
        assert docker.containers(job) == []
        assert live in [cid for cid, _ in docker.containers()]
    finally:
        docker.remove(live)


def test_missing_engine_or_image_is_a_clear_error(docker, tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("echo hi")])
    cases = [({"image": "agent-sandbox:no-such-tag"}, "build-image.sh"),
             ({"host": f"unix://{tmp_path}/no-engine.sock"}, "not reachable"),
             ({"docker": ""}, "not installed")]
    for config, expected in cases:
        result = get_backend("docker", **config).run(spec, recorder)
        assert result.status == ev.ERROR_STATUS and expected in result.reason, (config, result.reason)
    assert expected in recorder.of_type(ev.ERROR)[-1]["data"]["message"]
