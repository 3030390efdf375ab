"""The emulator's Docker runtime: one container per sandbox, as on Modal.
What bubblewrap cannot show is checked here: processes outlive their exec,
CPU and memory limits reach the container, a container that fails to start
shows at the first exec, and ending the sandbox removes the container."""

from __future__ import annotations

import json
import subprocess
import time

import modal
import modal.exception as mexc
import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends.modal import ModalBackend
from agent_sandbox.spec import Limits
from tests.conftest import REPO, make_spec
from tests.modal_support import PYTHON_SLIM, cgroup_limits, require_docker_runtime, shared_emulator


@pytest.fixture(scope="module")
def emulator():
    emulator = shared_emulator()
    require_docker_runtime()
    emulator.use_runtime("docker")
    yield emulator
    emulator.use_runtime("bwrap")


@pytest.fixture(scope="module")
def app(emulator):
    return modal.App.lookup("emulator-docker-tests", create_if_missing=True)


def container(sandbox) -> dict | None:
    out = subprocess.run(["docker", "inspect", f"modal-emulator-{sandbox.object_id}"],
                         capture_output=True, text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def end(sandbox) -> None:
    sandbox.terminate()
    sandbox.wait(raise_on_termination=False)


def test_one_container_per_sandbox_with_its_limits_removed_at_the_end(app, emulator):
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60,
                                   cpu=(0.25, 0.5), memory=(300, 300), block_network=True)
    try:
        process = sandbox.exec("sh", "-c", "echo ok", bufsize=1)
        assert process.stdout.read() == "ok\n" and process.wait() == 0
        found = container(sandbox)
        host = found["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == host["MemorySwap"] == 300 * 1024 * 1024
        assert host["PidsLimit"] == emulator.state()["sandbox_limits"]["max_processes"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"] and found["Config"]["User"] == "10001:10001"
    finally:
        end(sandbox)
    assert container(sandbox) is None


def test_hard_limits_come_only_from_the_limit_fields(app, emulator):
    own_memory = emulator.state()["sandbox_limits"]["memory_mb"]
    for resources, expected in (({"cpu": 0.25, "memory": 256}, (0.0, own_memory)),
                                ({"cpu": (0.25, 0.5), "memory": (256, 300)}, (0.5, 300))):
        sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60, **resources)
        try:
            assert cgroup_limits(sandbox) == expected
        finally:
            end(sandbox)


def test_no_variables_a_modal_container_would_not_have(app):
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60)
    try:
        env = dict(line.split("=", 1) for line in sandbox.exec("env").stdout.read().splitlines() if "=" in line)
    finally:
        end(sandbox)
    assert not set(env) & {"PYTHONPATH", "PYTHONUNBUFFERED", "MODAL_ENVIRONMENT", "MPLBACKEND"}
    assert env["PATH"].startswith("/usr/local/bin:") and env["LANG"] == "C.UTF-8" and env["HOME"] == "/root"


def test_the_offline_playbook_runs_in_the_image_built_from_the_modal_recipe(emulator, tmp_path, recorder):
    """The sandbox is the Modal image's recipe built for real (debian_slim's stand-in + the
    pinned packages), not this host's environment: a package the recipe lacks fails here."""
    sample = (REPO / "samples" / "plate_reader.csv").read_bytes()
    spec = make_spec(tmp_path, [], files={"plate_reader.csv": sample}, model="offline",
                     limits=Limits(run_timeout=240, command_timeout=200, idle_timeout=200, disk_mb=1024))
    result = ModalBackend().run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    paths = {f["path"] for f in result.manifest["files"]}
    assert {"report.md", "plate_reader/plate_reader.parquet"} <= paths   # duckdb
    assert any(p.startswith("plate_reader/plots/") and p.endswith(".png") for p in paths)   # Pillow
    started = recorder.of_type(ev.RUN_STARTED)[0]["data"]
    assert started["python"].startswith("3.11") and started["environment"] == "modal"


def test_processes_outlive_their_exec_until_the_sandbox_ends(app):
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60)
    try:
        assert sandbox.exec("sh", "-c", "nohup sleep 300 >/dev/null 2>&1 &").wait() == 0
        check = sandbox.exec("sh", "-c", "grep -l 'sleep' /proc/[0-9]*/cmdline | wc -l")
        assert int(check.stdout.read()) >= 1   # still running after its exec returned
    finally:
        end(sandbox)
    assert container(sandbox) is None


def test_exec_timeout_kills_the_command_tree_in_the_container(app):
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60)
    try:
        process = sandbox.exec("sh", "-c", "sleep 77 & sleep 77; echo never", timeout=1, bufsize=1)
        assert process.stdout.read() == "" and process.wait() == -1
        count = ("for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done "
                 "| grep -c '[s]leep 77' || true")
        for _ in range(50):   # the emulator kills at its own deadline, about when the client gave up
            if sandbox.exec("sh", "-c", count).stdout.read().strip() == "0":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the timed-out command is still running")
    finally:
        end(sandbox)


def test_a_container_that_cannot_start_shows_at_the_first_exec(emulator, app, tmp_path, recorder):
    emulator.use_runtime("docker", docker_image="modal-emulator-test/no-such-image:latest")
    try:
        sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60)
        with pytest.raises(mexc.NotFoundError, match="could not start the container"):
            sandbox.exec("true")
        result = ModalBackend().run(make_spec(tmp_path, []), recorder)
    finally:
        emulator.use_runtime("docker")
    assert result.status == ev.ERROR_STATUS
    assert "could not start the agent" in result.reason and "could not start the container" in result.reason


def test_containers_of_a_dead_emulator_are_removed_not_those_of_a_live_one(emulator):
    import asyncio
    import os
    import uuid

    from modal_emulator.docker_runtime import OWNER_LABEL, remove_orphans

    finished = subprocess.Popen(["true"])
    finished.wait()   # its pid now belongs to no process: an emulator that died
    names = {f"modal-emulator-test-{uuid.uuid4().hex[:8]}": pid for pid in (finished.pid, os.getpid())}
    for name, pid in names.items():
        subprocess.run(["docker", "run", "--detach", "--label", f"{OWNER_LABEL}={pid}", "--name", name,
                        PYTHON_SLIM, "sleep", "300"], check=True, capture_output=True)
    try:
        removed = asyncio.run(remove_orphans())
        dead, alive = names
        assert dead in removed and alive not in removed
        assert subprocess.run(["docker", "inspect", alive], capture_output=True).returncode == 0
    finally:
        subprocess.run(["docker", "rm", "--force", *names], capture_output=True)


def test_an_open_network_reaches_the_internet_never_the_host(app, emulator):
    from tests.test_modal_emulator import network_probe

    code, hosts = network_probe(emulator)
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60)
    try:
        process = sandbox.exec("python", "-c", code, bufsize=1)
        lines = [line for line in process.stdout.read().split("\n") if line]
        assert lines == [f"blocked {h}" for h in hosts[:-1]] + ["open pypi.org"]
        assert container(sandbox)["HostConfig"]["NetworkMode"] == "none"
    finally:
        end(sandbox)


def test_running_out_of_memory_ends_the_whole_container(app):
    """As gVisor does on Modal: the container's OOM kill ends the sandbox, not only the greedy process."""
    from tests.test_modal_emulator import MEMORY_HOG

    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60, memory=(256, 256))
    try:
        bystander = sandbox.exec("sleep", "60")
        started = time.monotonic()
        sandbox.exec("python3", "-c", MEMORY_HOG)
        sandbox.wait(raise_on_termination=False)
        assert sandbox.returncode == 137 and time.monotonic() - started < 30
        with pytest.raises(mexc.NotFoundError, match="ended with its sandbox"):
            bystander.poll()
    finally:
        end(sandbox)
    assert container(sandbox) is None
