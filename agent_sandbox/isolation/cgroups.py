"""One cgroup per sandbox: its memory, processes and CPU, as the kernel counts them.

Each run (a local jail, an emulator sandbox) gets, in the cgroup v1 memory,
pids and cpu hierarchies,

    /sys/fs/cgroup/<controller>/agent-sandbox/<owner pid>-<name>-<random>

with the run's limits written there before anything runs: memory (swap
included, so no swap either), the process count (threads included) and the
CPU quota. The launcher (launch.py) joins them before it starts the jail,
so everything the jail starts is counted and nothing can leave. The folder
names the host process that owns it: `leftovers()` lists those whose owner is
gone (a server killed by SIGKILL), to be killed and removed; the name is also
the run's sandbox id, by which `named()` finds it again.

Creating them needs root and writable v1 controllers; `RunCgroup.create`
raises CgroupUnavailable saying why, and callers report the limit as not
enforced.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox.isolation.owners import process_alive

ROOT = Path("/sys/fs/cgroup")
PARENT = "agent-sandbox"
CONTROLLERS = ("memory", "pids", "cpu")
MB = 1024 * 1024
CPU_PERIOD_US = 100_000


class CgroupUnavailable(RuntimeError):
    pass


@dataclass
class RunCgroup:
    name: str
    paths: dict[str, Path] = field(default_factory=dict)   # controller -> this run's folder

    @classmethod
    def create(cls, label: str, memory_mb: int, max_processes: int, cpu: float) -> RunCgroup:
        """A new cgroup in every controller, limits set; raises CgroupUnavailable."""
        if os.geteuid() != 0:
            raise CgroupUnavailable("needs root (cgroups)")
        label = re.sub(r"[^A-Za-z0-9_.-]", "-", label)[:40]
        group = cls(f"{os.getpid()}-{label}-{secrets.token_hex(3)}")
        try:
            for controller in CONTROLLERS:
                parent = ROOT / controller / PARENT
                if not (ROOT / controller).is_dir():
                    raise CgroupUnavailable(f"no cgroup v1 {controller} controller at {ROOT / controller}")
                parent.mkdir(exist_ok=True)
                path = parent / group.name
                path.mkdir()
                group.paths[controller] = path
            memory = group.paths["memory"]
            _write(memory / "memory.limit_in_bytes", memory_mb * MB)
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", memory_mb * MB)
            _write(group.paths["pids"] / "pids.max", max_processes)
            if cpu > 0:   # 0: no quota
                _write(group.paths["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
                _write(group.paths["cpu"] / "cpu.cfs_quota_us", max(1000, int(cpu * CPU_PERIOD_US)))
        except OSError as exc:
            group.remove()
            raise CgroupUnavailable(f"cgroups not writable ({exc.strerror or exc}: {exc.filename or ''})") from exc
        except CgroupUnavailable:
            group.remove()
            raise
        return group

    @classmethod
    def named(cls, name: str) -> RunCgroup | None:
        """The existing cgroup of that name (a run's sandbox id), or None."""
        if not re.fullmatch(r"[0-9]+-[A-Za-z0-9_.-]+", name):
            return None
        group = cls(name, {c: ROOT / c / PARENT / name for c in CONTROLLERS
                           if (ROOT / c / PARENT / name).is_dir()})
        return group if group.paths else None

    def procs_files(self) -> list[str]:
        """Where a process writes its pid to join (the launcher does, before the jail starts)."""
        return [str(path / "cgroup.procs") for path in self.paths.values()]

    def counters(self) -> dict[str, int]:
        """How often the limits bit: processes killed for memory, forks refused."""
        return {"oom_kills": _field(self.paths.get("memory"), "memory.oom_control", "oom_kill"),
                "forks_refused": _field(self.paths.get("pids"), "pids.events", "max")}

    def pids(self) -> list[int]:
        path = self.paths.get("pids") or next(iter(self.paths.values()), None)
        try:
            return [int(p) for p in (path / "cgroup.procs").read_text().split()] if path else []
        except OSError:
            return []

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL everything in the cgroup until it is empty; False if it is not by `timeout`."""
        if "cpu" in self.paths:   # a process needs CPU to die: a throttled crowd dies slowly
            try:
                _write(self.paths["cpu"] / "cpu.cfs_quota_us", -1)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def remove(self, timeout: float = 10.0) -> bool:
        """Kill what is left, then remove the folders (a process just killed may take a moment);
        True if a process was left to kill."""
        had_processes = bool(self.pids())
        self.kill(timeout)
        deadline = time.monotonic() + timeout
        for path in list(self.paths.values()):
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    self.kill(1.0)
                    time.sleep(0.05)
        self.paths = {c: p for c, p in self.paths.items() if p.exists()}
        return had_processes


def _write(path: Path, value: int) -> None:
    path.write_text(str(value))


def _field(folder: Path | None, filename: str, key: str) -> int:
    return 0 if folder is None else field_count(folder / filename, key)


def field_count(path: Path, key: str) -> int:
    """The number after `key` in a cgroup file of "key value" lines (0 if absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def leftovers() -> list[RunCgroup]:
    """Cgroups of runs whose owning process is gone (it was killed before cleaning up)."""
    found: dict[str, RunCgroup] = {}
    for controller in CONTROLLERS:
        parent = ROOT / controller / PARENT
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            owner = name.partition("-")[0]
            gone = owner.isdigit() and not process_alive(f"{socket.gethostname()}:{owner}")
            if gone and (parent / name).is_dir():
                found.setdefault(name, RunCgroup(name)).paths[controller] = parent / name
    return list(found.values())
