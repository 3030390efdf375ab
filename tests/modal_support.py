"""The local Modal API emulator as a test service.

Started once per test session (`python -m modal_emulator` on free ports, as a
user would start it) and shared by the Modal tests and the conformance suite.
The real `modal` client is pointed at it through MODAL_SERVER_URL and
throwaway tokens.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_sandbox.tree import remove_tree

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30


class EmulatorProcess:
    def __init__(self, runtime: str = "bwrap", *extra: str, verbose: bool = True):
        self.folder = Path(tempfile.mkdtemp(prefix="modal-emulator-test-"))
        self.log_path = self.folder / "emulator.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            # bubblewrap by default, whatever this machine has: the same sandboxes everywhere;
            # tests switch to Docker explicitly (use_runtime).
            [sys.executable, "-m", "modal_emulator", "--port", "0", "--state", str(self.folder / "state"),
             "--runtime", runtime, "--sandbox-disk-mb", "1024", *extra, *(["-v"] if verbose else [])],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True, preexec_fn=_die_with_parent)
        self.grpc_url = self.http_url = ""
        ready = threading.Event()

        def read_ready_line() -> None:
            line = self.proc.stdout.readline()
            if line.startswith("modal-emulator ready"):
                fields = dict(part.split("=", 1) for part in line.split()[2:])
                self.grpc_url, self.http_url = fields["grpc"], fields["http"]
            ready.set()

        threading.Thread(target=read_ready_line, daemon=True).start()
        if not ready.wait(READY_TIMEOUT) or not self.grpc_url:
            self.stop(keep_folder=True)
            raise RuntimeError(f"the emulator did not start; log:\n{self.log_text()}")

    def env(self) -> dict[str, str]:
        """What the real client needs to talk to us."""
        return {"MODAL_SERVER_URL": self.grpc_url, "MODAL_TOKEN_ID": "ak-emulator-test",
                "MODAL_TOKEN_SECRET": "as-emulator-test"}

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.http_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def inject(self, rpc: str, status: str = "UNAVAILABLE", count: int = 1, kind: str = "grpc_error") -> None:
        self.admin("POST", "/emulator/faults", {"rpc": rpc, "status": status, "count": count, "kind": kind})

    def set_create_rate(self, per_second: float) -> None:
        self.admin("POST", "/emulator/limits", {"create_rate": per_second})

    def use_runtime(self, runtime: str, docker_image: str = "") -> None:
        """Run sandboxes created from now on with "bwrap" or "docker" (in images built from their
        definitions, or in `docker_image` instead)."""
        self.admin("POST", "/emulator/runtime", {"runtime": runtime, "docker_image": docker_image})

    def set_ended_task(self, mode: str) -> None:
        """What exec streams and calls get once their sandbox ended: "close", "not_found" or "unreachable"."""
        self.admin("POST", "/emulator/behaviour", {"ended_task": mode})

    @contextlib.contextmanager
    def behaving(self, **changes):
        """The emulator with these behaviours (fail_read, schedule_delay, commit_delay) for a while."""
        before = self.state()["behaviour"]
        self.admin("POST", "/emulator/behaviour", changes)
        try:
            yield self
        finally:
            self.admin("POST", "/emulator/behaviour", {name: before[name] for name in changes})

    def clear_faults(self) -> None:
        self.admin("DELETE", "/emulator/faults")

    def state(self) -> dict:
        return self.admin("GET", "/emulator/state")

    def running_sandboxes(self) -> list[dict]:
        return [sb for sb in self.state()["sandboxes"] if sb["running"]]

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, keep_folder: bool = False) -> None:
        """End the emulator, then remove its folder (state and log) unless the test looks at it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if not keep_folder:
            with contextlib.suppress(OSError):   # a mount a killed sandbox left: the folder stays
                remove_tree(self.folder)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies without cleaning up.

    (The signal follows the thread that started the child: start it from the
    main thread, as fixtures are.)
    """
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# What the emulator's Docker runtime builds Modal images on: its stand-in for python:3.11-slim-bookworm.
PYTHON_SLIM = f"agent-sandbox-python:{sys.version_info[0]}.{sys.version_info[1]}-slim-bookworm"


def require_docker_runtime() -> None:
    """The emulator's Docker runtime needs an engine and the python:slim stand-in. Like the
    Docker backend's tests, fail with what to do; AGENT_SANDBOX_SKIP_DOCKER=1 skips."""
    import pytest

    from tests.docker_engine import skip_if_docker_skipped

    skip_if_docker_skipped()
    try:
        found = subprocess.run(["docker", "image", "inspect", PYTHON_SLIM], capture_output=True,
                               timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        found = False
    if found:
        return
    pytest.fail(f"the emulator's Docker runtime needs an engine and the image {PYTHON_SLIM} "
                "(make test sets both up; AGENT_SANDBOX_SKIP_DOCKER=1 skips these tests)", pytrace=False)


CGROUP_LIMITS = ("for f in /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max "
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max; "
                 "do [ -r $f ] && echo $f $(cat $f); done")


def cgroup_limits(sandbox) -> tuple[float, int]:
    """(CPU quota in cores, 0 for none; memory limit in MB) as the sandbox's own cgroup says."""
    found = dict(line.split(" ", 1) for line in sandbox.exec("sh", "-c", CGROUP_LIMITS).stdout.read().splitlines())
    cpu = found.get("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or found["/sys/fs/cgroup/cpu.max"].split()[0]
    cpu = 0.0 if cpu in ("-1", "max") else int(cpu) / 100_000
    memory = found.get("/sys/fs/cgroup/memory/memory.limit_in_bytes") or found["/sys/fs/cgroup/memory.max"]
    return cpu, int(memory) // (1024 * 1024)


_shared: EmulatorProcess | None = None
_lock = threading.Lock()


def shared_emulator() -> EmulatorProcess:
    """One emulator per test process, with the client's environment pointed at it.

    The `modal` client caches its connection per process, so every test must
    use the same server; the environment is set for the whole session.
    """
    global _shared
    with _lock:
        if _shared is None:
            _shared = EmulatorProcess()
            os.environ.update(_shared.env())
            atexit.register(_shared.stop)
        return _shared


def fast_retrying_backend(emulator: EmulatorProcess, settle: float = 0.0) -> Iterator[Any]:
    """A `backend` fixture's body: a Modal backend that retries at once; afterwards the emulator's
    faults are cleared and no sandbox may be left running (after up to `settle` seconds, for a
    sandbox a test abandoned while it was being scheduled: it is ended once it comes)."""
    from agent_sandbox.backends.modal import ModalBackend

    yield ModalBackend(retry_delay=0.01, create_attempts=3)
    emulator.clear_faults()
    deadline = time.monotonic() + settle
    while emulator.running_sandboxes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not emulator.running_sandboxes(), "a sandbox was left running"
