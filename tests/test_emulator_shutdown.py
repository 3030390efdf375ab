"""The emulator stops when asked, whatever its sandboxes did.

A sandbox forks well over a thousand processes (some in sessions of their
own) and builds a tree ten thousand folders deep in a volume;
then the emulator gets SIGTERM. It must exit within seconds and leave no
process, container, mount or cgroup behind. Each test has its own emulator
(the `modal` client is driven from a child process: it keeps one server per
process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent_sandbox.tree import remove_tree
from tests.conftest import REPO
from tests.modal_support import EmulatorProcess, require_docker_runtime

CHILDREN = 1500

HOSTILE = r'''
import os, time
TOKEN = "{token}"
os.chdir("/outputs")
for _ in range(10000):
    os.mkdir("d")
    os.chdir("d")
os.chdir("/")
for i in range({children}):
    if os.fork() == 0:
        if i % 2:
            os.setsid()
        time.sleep(3600)
        os._exit(0)
print("ready", flush=True)
time.sleep(3600)
'''

CLIENT = r'''
import sys, modal
app = modal.App.lookup("shutdown-test", create_if_missing=True)
volume = modal.Volume.from_name("shutdown-test-volume", create_if_missing=True)
sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=3600,
                               volumes={"/outputs": volume})
process = sandbox.exec("python", "-c", sys.argv[1], bufsize=1)
for line in process.stdout:
    print(line, end="", flush=True)
    if "ready" in line:
        break
sys.stdin.read()
'''


@pytest.mark.parametrize("runtime", ["bwrap", "docker"])
def test_sigterm_ends_the_emulator_within_seconds_and_leaves_nothing(runtime):
    if runtime == "docker":
        require_docker_runtime()
    token = uuid.uuid4().hex
    emulator = EmulatorProcess(runtime=runtime)
    client = subprocess.Popen([sys.executable, "-c", CLIENT, HOSTILE.format(token=token, children=CHILDREN)],
                              cwd=REPO, env={**os.environ, **emulator.env()}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        ready = client.stdout.readline()
        assert ready.strip() == "ready", f"the sandbox did not get ready:\n{emulator.log_text()[-3000:]}"
        assert len(processes_with(token)) > CHILDREN, "the sandbox's processes run"
        started = time.monotonic()
        emulator.proc.terminate()
        emulator.proc.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        client.kill()
        client.wait()
        emulator.stop(keep_folder=True)   # its state is looked at below
    assert took < 15, f"the emulator took {took:.1f}s to stop"
    deadline = time.monotonic() + 10   # SIGKILLed processes may take a moment to be reaped
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(token) == []
    state = str(emulator.folder / "state")
    assert not [line for line in Path("/proc/mounts").read_text().splitlines() if state in line]
    owner = str(emulator.proc.pid)
    for controller in ("memory", "pids"):
        parent = Path("/sys/fs/cgroup", controller, "agent-sandbox")
        assert not [p for p in parent.iterdir() if p.name.startswith(owner + "-")] if parent.is_dir() else True
    if runtime == "docker":
        out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=modal-emulator.pid={owner}", "-q"],
                             capture_output=True, text=True).stdout
        assert out.strip() == ""
    assert not list((emulator.folder / "state" / "sandboxes").iterdir())
    remove_tree(emulator.folder)


def processes_with(token: str) -> list[int]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found
