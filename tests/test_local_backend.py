"""What the local bubblewrap jail must hide and forbid (beyond the conformance suite)."""

import json
import os
import signal
import time

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from tests.conftest import make_spec

SECRET = "sk-local-0d9e8f7a6b"


def shell(command):
    return {"kind": "shell", "command": command}


def outputs_text(recorder):
    return "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))


def test_workspace_is_read_only_and_originals_unchanged(tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("echo changed > /workspace/data.csv; echo $?; "
                                      "touch /workspace/new.txt 2>&1; ls /workspace")])
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.SUCCEEDED
    assert (spec.workspace / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert not (spec.workspace / "new.txt").exists()
    assert "Read-only file system" in outputs_text(recorder)


def test_host_is_hidden_and_network_is_off(tmp_path, recorder):
    marker = tmp_path / "host-only.txt"
    marker.write_text("host secret")
    spec = make_spec(tmp_path, [
        shell(f"cat {marker} 2>&1; ls /root /home 2>&1; cat /proc/1/environ 2>&1 | tr '\\0' ' '; echo"),
        {"kind": "python", "code": "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                                   "    print('NET-OPEN')\nexcept OSError as e:\n    print('NET-BLOCKED', e)"},
        shell("cat /proc/$PPID/environ 2>&1 | tr '\\0' ' '; echo; ps -e -o pid,comm 2>/dev/null || ls /proc"),
    ], secrets={"ANTHROPIC_API_KEY": SECRET})
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = outputs_text(recorder)
    assert "host secret" not in text and "No such file" in text
    lines = text.splitlines()
    assert any(line.startswith("NET-BLOCKED") for line in lines)
    assert "NET-OPEN" not in lines
    assert "Permission denied" in text  # /proc/<agent>/environ: the agent is not dumpable
    assert SECRET not in json.dumps(recorder.events)


def test_refuses_to_run_without_bubblewrap_unless_allowed(tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("echo hi")])
    result = get_backend("local", bwrap="", allow_unsandboxed=False).run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "bubblewrap" in result.reason
    # As root, not even when allowed: the commands would be host root (test_unprivileged.py runs
    # the allowed case as a normal user).
    spec = make_spec(tmp_path / "second", [shell("echo hi")])
    result = get_backend("local", bwrap="", allow_unsandboxed=True).run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "as root" in result.reason


def test_missing_workspace_is_a_clear_error(tmp_path, recorder):
    spec = make_spec(tmp_path, [])
    spec.workspace = tmp_path / "nope"
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "does not exist" in result.reason


def test_runs_with_a_python_environment_under_tmp(tmp_path, recorder):
    """A clone (and its venv) under /tmp must not be hidden by the jail's own /tmp."""
    import subprocess
    import sys
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    spec = make_spec(tmp_path, [shell("echo from-tmp-venv; ls /tmp")])
    result = get_backend("local", python=str(venv / "bin" / "python")).run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert "from-tmp-venv" in outputs_text(recorder)


def root_only():
    import os

    import pytest
    if os.geteuid() != 0:
        pytest.skip("the jail drops from root to its own user only when started by root (CI runs as root)")


def test_as_root_the_jail_is_the_sandbox_user_in_its_own_cgroup(tmp_path, recorder):
    """What the host sees of a running jail: a uid of its own from AGENT_SANDBOX_UIDS, no groups,
    no capabilities, in the run's cgroups with the run's limits; all of it gone after the run."""
    import os
    import time
    from pathlib import Path

    from agent_sandbox.backends.local import LocalConfig
    from agent_sandbox.isolation.uids import parse_range
    from agent_sandbox.spec import Limits
    root_only()
    token = f"{7 + os.getpid() % 1000 / 1000:.3f}"
    seen = {}

    def on_event(event):
        recorder(event)
        if event["type"] == ev.OUTPUT and "running" in event["data"].get("text", "") and not seen:
            deadline = time.monotonic() + 4
            while not seen and time.monotonic() < deadline:
                for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                    try:
                        if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{token}\0".encode():
                            seen["status"] = Path(f"/proc/{pid}/status").read_text()
                            seen["cgroup"] = Path(f"/proc/{pid}/cgroup").read_text()
                    except OSError:
                        pass
            groups = dict(line.split(":", 2)[1:] for line in seen.get("cgroup", "").splitlines())
            for controller, files in (("memory", ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]),
                                      ("pids", ["pids.max"]), ("cpu", ["cpu.cfs_quota_us"])):
                folder = Path("/sys/fs/cgroup", controller + groups.get(controller, "/none"))
                seen[controller] = folder
                for name in files:
                    seen[name] = (folder / name).read_text().strip()

    spec = make_spec(tmp_path, [shell(f"echo running; sleep {token}")],
                     limits=Limits(run_timeout=60, command_timeout=30, idle_timeout=30,
                                   memory_mb=300, max_processes=77, cpu=0.5))
    result = get_backend("local").run(spec, on_event)
    assert result.status == ev.SUCCEEDED, result.reason
    status = dict(line.split(":", 1) for line in seen["status"].splitlines())
    uid = status["Uid"].split()[0]
    assert int(uid) in parse_range(LocalConfig().uids)
    assert status["Uid"].split() == [uid] * 4 and status["Gid"].split() == [uid] * 4
    assert status["Groups"].strip() == "" and status["CapEff"].strip() == status["CapBnd"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1"
    assert "/agent-sandbox/" in str(seen["memory"]) and str(seen["memory"]).endswith(seen["pids"].name)
    assert seen["memory.limit_in_bytes"] == seen["memory.memsw.limit_in_bytes"] == str(300 * 1024 * 1024)
    assert seen["pids.max"] == "77" and seen["cpu.cfs_quota_us"] == "50000"
    assert not seen["memory"].exists() and not seen["pids"].exists() and not seen["cpu"].exists()
    enforced = recorder.of_type(ev.RUN_STARTED)[0]["data"]["limits_enforced"]
    assert enforced["max_processes"] == "cgroup pids.max" and "filesystem of its own" in enforced["disk_mb"]


def test_when_the_agent_itself_runs_out_of_memory_the_run_says_so(tmp_path, recorder):
    from agent_sandbox.spec import Limits
    root_only()
    spec = make_spec(tmp_path, [shell("echo hi")], limits=Limits(run_timeout=60, command_timeout=30,
                                                                 idle_timeout=30, memory_mb=8))
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.FAILED and "out of memory" in result.reason and "8 MB" in result.reason


def test_leftover_cgroups_of_a_dead_owner_are_found(tmp_path):
    import subprocess

    from agent_sandbox.isolation import cgroups
    root_only()
    gone = subprocess.Popen(["true"])
    gone.wait()
    name = f"{gone.pid}-leftover-test"
    made = []
    for controller in cgroups.CONTROLLERS:
        folder = cgroups.ROOT / controller / cgroups.PARENT / name
        folder.mkdir(parents=True)
        made.append(folder)
    try:
        [found] = [group for group in cgroups.leftovers() if group.name == name]
        assert set(found.paths) == set(cgroups.CONTROLLERS)
        found.remove()
        assert not any(folder.exists() for folder in made)
    finally:
        for folder in made:
            if folder.exists():
                folder.rmdir()


def test_a_run_is_refused_at_start_when_the_host_lacks_its_disk(tmp_path, recorder):
    """The run's disk is reserved up front: no room, no run (and nothing half made)."""
    import subprocess

    from agent_sandbox.spec import Limits
    root_only()
    scratch, image = tmp_path / "scratch", tmp_path / "small.img"
    scratch.mkdir()
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(scratch)], check=True)
    subprocess.run(["rmdir", str(scratch / "lost+found")], check=True)
    try:
        spec = make_spec(tmp_path, [shell("echo never")], limits=Limits(disk_mb=64))
        result = get_backend("local", scratch_root=str(scratch)).run(spec, recorder)
        assert result.status == ev.ERROR_STATUS and "MB free" in result.reason and "64 MB" in result.reason
        assert not recorder.of_type(ev.RUN_STARTED) and list(scratch.iterdir()) == []
    finally:
        subprocess.run(["umount", str(scratch)], check=True)


def test_a_run_that_would_leave_the_host_without_headroom_is_refused(tmp_path, recorder):
    """A reservation that fits but would leave the host less than its headroom (the job
    store and the results being collected need room too) is given back and refused."""
    import shutil
    import subprocess

    from agent_sandbox.isolation.scratch import headroom
    from agent_sandbox.spec import Limits
    root_only()
    scratch, image = tmp_path / "scratch", tmp_path / "small.img"
    scratch.mkdir()
    subprocess.run(["truncate", "-s", "200M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(scratch)], check=True)
    subprocess.run(["rmdir", str(scratch / "lost+found")], check=True)
    try:
        free_mb = shutil.disk_usage(scratch).free // (1024 * 1024)
        keep_mb = headroom(scratch) // (1024 * 1024)
        too_much = free_mb - keep_mb // 2          # fits on the disk, but eats into the headroom
        spec = make_spec(tmp_path, [shell("echo never")], limits=Limits(disk_mb=too_much))
        result = get_backend("local", scratch_root=str(scratch)).run(spec, recorder)
        assert result.status == ev.ERROR_STATUS and "must stay free" in result.reason, result.reason
        assert list(scratch.iterdir()) == [] and shutil.disk_usage(scratch).free // (1024 * 1024) >= free_mb - 1
        fits = free_mb - keep_mb * 2                 # leaves the headroom: runs
        spec = make_spec(tmp_path / "second", [shell("echo ran")], limits=Limits(disk_mb=fits))
        assert get_backend("local", scratch_root=str(scratch)).run(spec, recorder).status == ev.SUCCEEDED
    finally:
        subprocess.run(["umount", str(scratch)], check=True)


def test_what_a_killed_process_left_is_swept(tmp_path):
    """A server killed with SIGKILL cannot clean up: its runs' capped filesystems (with
    their reserved images), cgroups and stages are found by owner and removed, and a
    jail still running in such a cgroup is killed (and counted)."""
    import subprocess

    from agent_sandbox.isolation.cgroups import RunCgroup
    from agent_sandbox.isolation.jail import make_stage
    from agent_sandbox.isolation.scratch import OWNER, RunSpace
    root_only()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{__import__('socket').gethostname()}:{gone.pid}"
    space = RunSpace.create(tmp_path, "agent-dead-", 16, (10001, 10001))
    (space.folder / OWNER).write_text(dead)
    alive = RunSpace.create(tmp_path, "agent-alive-", 16, (10001, 10001))
    group = RunCgroup.create("dead", 64, 8, 0)
    renamed = {}
    for controller, path in group.paths.items():   # as if a dead process had made it
        renamed[controller] = path.with_name(f"{gone.pid}-{path.name.partition('-')[2]}")
        path.rename(renamed[controller])
    stage = make_stage()
    dead_stage = stage.with_name(f"stage-{gone.pid}-x")
    stage.rename(dead_stage)
    procs = [str(path / "cgroup.procs") for path in renamed.values()]
    left_running = subprocess.Popen(   # what a jail left running looks like: a process in the cgroup
        ["sh", "-c", 'for f in "$@"; do echo $$ > "$f"; done; exec sleep 300', "sh", *procs],
        start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while str(left_running.pid) not in (renamed["pids"] / "cgroup.procs").read_text().split():
            assert time.monotonic() < deadline and left_running.poll() is None
            time.sleep(0.02)
        assert os.path.ismount(space.data)
        assert get_backend("local", scratch_root=str(tmp_path)).sweep_orphans() == 1
        assert left_running.wait(timeout=10) == -signal.SIGKILL
        assert not space.folder.exists() and not any(p.exists() for p in renamed.values())
        assert not dead_stage.exists()
        assert alive.folder.exists() and os.path.ismount(alive.data)   # a live owner's run is left alone
        assert get_backend("local", scratch_root=str(tmp_path)).sweep_orphans() == 0
    finally:
        if left_running.poll() is None:
            left_running.kill()
        alive.remove()
        for path in renamed.values():
            if path.exists():
                path.rmdir()


def test_the_jail_ends_when_its_host_stops_reading_even_with_its_parent_alive(tmp_path, recorder):
    """The host may die in ways parent-death signals miss (before bubblewrap asked for one):
    the agent watches its stdout and ends, with every process of its jail, once nobody reads it."""
    from agent_sandbox.agent.process_tree import descendants
    from agent_sandbox.backends.monitor import RunMonitor
    from tests.leftovers import in_namespaces, pid_namespaces, wait_until
    spec = make_spec(tmp_path, [shell("echo ready; sleep 300")])
    sandbox = get_backend("local").sandbox(spec)
    monitor = RunMonitor(spec, recorder, None)
    sandbox.create(monitor)
    try:
        streams = sandbox.start(monitor)
        streams.stdin.write(b"{}\n")
        streams.stdin.close()
        for line in streams.stdout:
            if b'"output"' in line and b"ready" in line:
                break
        jail = pid_namespaces(descendants(sandbox.proc.pid)) - pid_namespaces([os.getpid()])
        assert jail and in_namespaces(jail), "the agent and its command run in the jail's namespace"
        sandbox.proc.stdout.close()   # this process lives on (bubblewrap's parent): only the reader is gone
        wait_until(lambda: not in_namespaces(jail), 10, "the jail ends once its output has no reader")
        assert sandbox.proc.wait(timeout=10) == 1
    finally:
        sandbox.close()
