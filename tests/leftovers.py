"""What of a sandbox is still alive, found the way the kernel groups it (not by name).

A local jail is a PID namespace of its own (the agent is its PID 1) inside a
cgroup named after the run (its sandbox id, when we are root); a Docker
sandbox is a container labelled with its job; an emulator sandbox is a tagged
sandbox in the emulator's state. Zombies count as dead: they hold nothing but
a process-table slot until their new parent reaps them.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def _live_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def in_cgroup(name: str) -> list[int]:
    """Live processes in the cgroup of that name (in any hierarchy)."""
    found = []
    for pid in _live_pids():
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            continue
        if any(line.rsplit("/", 1)[-1] == name for line in lines):
            found.append(pid)
    return found


def pid_namespaces(pids: Iterable[int]) -> set[str]:
    """The PID namespaces of these processes (e.g. "pid:[4026532751]")."""
    found = set()
    for pid in pids:
        try:
            found.add(os.readlink(f"/proc/{pid}/ns/pid"))
        except OSError:
            pass
    return found


def in_namespaces(namespaces: set[str]) -> list[int]:
    """Live processes in any of these PID namespaces."""
    found = []
    for pid in _live_pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") in namespaces:
                found.append(pid)
        except OSError:
            pass
    return found


def containers(*labels: str) -> list[str]:
    """Docker containers (running or not) with all these labels ("key=value")."""
    args = ["docker", "ps", "-aq"]
    for label in labels:
        args += ["--filter", f"label={label}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.split()


def container_named(name: str) -> bool:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{name}$"], capture_output=True,
                         text=True, timeout=60).stdout
    return bool(out.strip())


def wait_until(condition: Callable[[], object], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout:g}s: {what or condition}")
        time.sleep(0.1)
