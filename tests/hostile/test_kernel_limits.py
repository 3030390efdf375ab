"""Issue 26 F14: every sandbox ran as host uid 10001, so the kernel's per-uid limits were shared:
one job took all 128 inotify instances (another job's inotify_init failed) and one held 5,000
user namespaces in 15 s (the shared limit, once spent, stops every new jail). Now each running
sandbox has a uid of its own, from a range no user of the host has (AGENT_SANDBOX_UIDS), and
the local jail allows no user namespace inside (bubblewrap --disable-userns). Measured on local
and Docker (Modal gives each sandbox a machine of its own): while one job holds every inotify
instance and every user namespace it can make, what another job gets."""

from __future__ import annotations

import json
import threading

import pytest

from agent_sandbox import events as ev
from agent_sandbox.spec import Limits
from agent_sandbox.testing.support import make_spec, python

GREEDY = r'''
import ctypes, json, os, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < 10000:
    fd = libc.inotify_init()
    if fd < 0:
        break
    held.append(fd)
userns = 0
for _ in range(100):                     # a child per user namespace (one cannot nest in an unmapped one)
    r, w = os.pipe()
    if os.fork() == 0:
        os.write(w, b"1" if libc.unshare(0x10000000) == 0 else b"0")
        time.sleep(120)
        os._exit(0)
    userns += os.read(r, 1) == b"1"
print("GREEDY", json.dumps({"inotify": len(held), "userns": userns, "uid": os.getuid()}), flush=True)
time.sleep(120)
'''
OTHER = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
print("OTHER", json.dumps({"inotify_init": "ok" if fd >= 0 else os.strerror(ctypes.get_errno()), "uid": os.getuid()}))
'''


def found(recorder, tag: str) -> dict:
    for e in recorder.of_type(ev.OUTPUT):
        for line in e["data"]["text"].splitlines():
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line: {recorder.text()[-2000:]}")


@pytest.mark.parametrize("name", ["local", "docker"])
def test_one_job_cannot_spend_the_kernel_limits_another_needs(name, tmp_path, request):
    from tests.conftest import Recorder
    backend = request.getfixturevalue(f"{name}_backend")
    limits = Limits(run_timeout=180, command_timeout=150, idle_timeout=150, disk_mb=128)
    greedy, other = Recorder(), Recorder()
    holding, cancel = threading.Event(), threading.Event()

    def on_greedy(event):
        greedy(event)
        if event["type"] == ev.OUTPUT and "GREEDY" in event["data"].get("text", ""):
            holding.set()

    runner = threading.Thread(target=backend.run, args=(make_spec(tmp_path / "greedy", [python(GREEDY)],
                                                                 limits=limits), on_greedy, cancel))
    runner.start()
    try:
        assert holding.wait(120), greedy.text()[-2000:]
        result = backend.run(make_spec(tmp_path / "other", [python(OTHER)], limits=limits), other)
    finally:
        cancel.set()
        runner.join(60)
    took, got = found(greedy, "GREEDY"), found(other, "OTHER")
    print(f"\nF14 {name}: one job held {took['inotify']} inotify instances and {took['userns']} user namespaces "
          f"as uid {took['uid']}; another job's inotify_init as uid {got['uid']}: {got['inotify_init']}")
    assert result.status == ev.SUCCEEDED, result.reason
    assert got["inotify_init"] == "ok" and got["uid"] != took["uid"]
    assert took["userns"] == 0


from tests.backends import docker_backend, local_backend  # noqa: E402, F401 (the fixtures above)
