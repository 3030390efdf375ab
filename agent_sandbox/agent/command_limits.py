"""Inside the sandbox: the limits the agent holds each command to, where the platform does not.

Modal takes no process count or disk size for Sandboxes, and past its memory
limit it ends the whole sandbox (gVisor), the agent and its log with it. So
with `--hold-limits` (the Modal backend asks for it) the agent holds every
command itself, from the sandbox's limits it is given:

- memory: RLIMIT_DATA at a cap below the sandbox's limit (the rest is the
  agent's), so an allocation past it fails in the command; and a watch of the
  command's resident memory (shared memory escapes RLIMIT_DATA) that stops
  it at the cap. The command dies, the agent lives on and says so;
- processes: when the agent is root (Modal runs sandboxes as root) commands
  run as an unprivileged user of the image (`nobody`), with RLIMIT_NPROC, so a
  fork past the limit fails with EAGAIN; when the agent is not root commands
  share its uid, and the count is the sandbox's own (its user namespace);
- disk: RLIMIT_FSIZE at the room left of `disk_mb` in /tmp, /outputs and the
  workspace (a write past it fails "File too large"), and a watch of what
  those folders really hold (allocated blocks: a sparse file counts what it
  holds, not its length) that stops the command at the cap.

Each stop, and each limit a command most likely ran into, comes back as a
note: a warning event, and a line of the command's output for the model.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import signal
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_sandbox.agent.process_tree import descendants, kill_tree

MB = 1024 * 1024
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
AGENT_SHARE = 4           # the agent keeps 1/AGENT_SHARE of the sandbox's memory (at least AGENT_RESERVE_MB)
AGENT_RESERVE_MB = 64
COMMAND_USER = "nobody"   # an unprivileged user every Debian image has
MEMORY_EVERY = 0.05       # seconds between looks at a command's memory and processes
DISK_EVERY = 0.5          # seconds between measures of the disk it wrote
MAX_WALKED = 200_000      # entries measured in the watched folders (the rest is not counted)
# What a command prints when an allocation or a fork was refused.
MEMORY_WORDS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory", "memory exhausted")
FORK_WORDS = ("Resource temporarily unavailable", "EAGAIN", "fork: retry", "Cannot fork", "can't fork")


@dataclass
class CommandLimits:
    memory_mb: int
    max_processes: int
    disk_mb: int
    folders: list[str]
    user: tuple[int, int] | None = None   # (uid, gid) commands run as, when the agent is root
    baseline: int = 0                     # bytes the folders held when the agent started
    command_room: int = 0                 # bytes the current command may write
    last: CommandWatch | None = field(default=None, repr=False)

    @classmethod
    def start(cls, limits: dict[str, Any], workspace: str, outputs: str) -> CommandLimits:
        """From the sandbox's limits (memory_mb, max_processes, disk_mb), at the agent's start."""
        tmp = tempfile.gettempdir()   # /tmp in a sandbox
        held = cls(int(limits.get("memory_mb") or 0), int(limits.get("max_processes") or 0),
                   int(limits.get("disk_mb") or 0), [tmp, outputs, workspace])
        if os.geteuid() == 0:
            held.user = unprivileged_user()
            os.chmod(tmp, 0o1777)
            held.hand_over()
        held.baseline = disk_used(held.folders)
        return held

    @property
    def memory_cap_mb(self) -> int:
        return max(1, self.memory_mb - max(AGENT_RESERVE_MB, self.memory_mb // AGENT_SHARE))

    def room(self) -> int:
        """Bytes the commands may still write before the disk cap."""
        cap = self.disk_mb * MB
        return min(cap, max(0, cap - (disk_used(self.folders) - self.baseline)))

    def prepare_command(self) -> dict[str, Any]:
        """Before each command: hand the folders over to the command user, and the
        arguments for Popen that run it under the limits."""
        reap_orphans()
        if self.user is not None:
            self.hand_over()
        self.command_room = self.room() if self.disk_mb else 0
        room = self.command_room if self.disk_mb else resource.RLIM_INFINITY
        return {"preexec_fn": lambda: self._in_child(room)}

    def env(self, environ: dict[str, str]) -> dict[str, str]:
        """A command's environment: a home of its own it may write to, when it is another user."""
        if self.user is None:
            return environ
        home = Path(self.folders[0], "home")
        home.mkdir(exist_ok=True)
        os.chown(home, *self.user)
        return {**environ, "HOME": str(home), "USER": COMMAND_USER}

    def watch(self, proc: subprocess.Popen) -> CommandWatch:
        self.last = CommandWatch(self, proc)
        return self.last

    def notes(self, exit_code: int | None, output: str) -> list[str]:
        """What the limits did to the last command, in words for the log and the model."""
        watch, self.last = self.last, None
        return watch.notes(exit_code, output) if watch is not None else []

    def hand_over(self) -> None:
        """Give the workspace and outputs (and what the agent wrote there as root) to the command user."""
        for folder in self.folders[1:]:
            for path, st in [(folder, os.lstat(folder)), *walk(folder)]:
                if st.st_uid != self.user[0] and not stat.S_ISLNK(st.st_mode):
                    os.chown(path, *self.user, follow_symlinks=False)

    def _in_child(self, room: int) -> None:
        """In the command's process, before it runs: become the command user, then the limits."""
        if self.user is not None:
            become(*self.user)
        if self.memory_mb:
            cap = self.memory_cap_mb * MB
            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
        if self.max_processes:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_processes, self.max_processes))
        if self.disk_mb:
            resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past it fails instead of killing


class CommandWatch:
    """A thread that watches one command's memory, processes and disk, and stops it at a cap."""

    def __init__(self, limits: CommandLimits, proc: subprocess.Popen):
        self.limits, self.proc = limits, proc
        self.stopped_for = ""          # why the watch killed the command
        self.peak_processes = 0
        self.room = limits.command_room
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="command-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        next_disk = 0.0
        while not self._done.wait(MEMORY_EVERY):
            tree = [self.proc.pid, *descendants(self.proc.pid)]
            resident, tasks = _memory_and_tasks(tree)
            self.peak_processes = max(self.peak_processes, tasks)
            if self.limits.memory_mb and resident > self.limits.memory_cap_mb * MB:
                return self._kill(f"it used {resident // MB} MB of memory")
            next_disk += MEMORY_EVERY
            if self.limits.disk_mb and next_disk >= DISK_EVERY:
                next_disk = 0.0
                if self.limits.room() == 0 and self.room > 0:
                    return self._kill("the disk cap was reached")

    def _kill(self, why: str) -> None:
        self.stopped_for = why
        kill_tree(self.proc)

    def notes(self, exit_code: int | None, output: str) -> list[str]:
        limits, notes = self.limits, []
        failed = exit_code not in (0, None)
        if self.stopped_for.startswith("it used") or any(w in output for w in MEMORY_WORDS):
            notes.append(f"out of memory: a command may use {limits.memory_cap_mb} MB (the sandbox has "
                         f"{limits.memory_mb} MB, the rest is the agent's); "
                         + (f"{self.stopped_for}, so it was stopped" if self.stopped_for else
                            "an allocation past that failed"))
        if self.stopped_for.startswith("the disk"):
            notes.append(f"disk cap reached: /tmp, /outputs and the workspace may hold {limits.disk_mb} MB "
                         "together; the command was stopped there")
        elif limits.disk_mb and ("File too large" in output or failed and limits.room() == 0):
            notes.append(f"disk cap reached: /tmp, /outputs and the workspace may hold {limits.disk_mb} MB "
                         f"together, {self.room // MB} MB were left for this command; a write past that failed")
        if limits.max_processes and (self.peak_processes >= limits.max_processes - 2
                                     or (failed or "EAGAIN" in output) and any(w in output for w in FORK_WORDS)):
            notes.append(f"process limit reached: commands may run {limits.max_processes} processes at once; "
                         "a new process was refused")
        return notes


def become(uid: int, gid: int) -> None:
    """Root to `uid`, for good: no capability left to regain, not even through a setuid
    program of the image (no_new_privs, an empty bounding set)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    for cap in range(last_capability() + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def last_capability() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63


def reap_orphans() -> None:
    """Reap what earlier commands left to the agent (its subreaper): a zombie still counts
    against the process limit until reaped. Only between commands: no child of ours runs."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def unprivileged_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(COMMAND_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def walk(folder: str):
    """(path, lstat) of everything under `folder`, without following links or recursing; bounded."""
    pending, seen = [folder], 0
    while pending and seen < MAX_WALKED:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    seen += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    yield entry.path, st
                    if stat.S_ISDIR(st.st_mode):
                        pending.append(entry.path)
        except OSError:
            continue


def disk_used(folders: list[str]) -> int:
    """Bytes the folders really hold (allocated blocks), each file once."""
    seen, total = set(), 0
    for folder in folders:
        for _, st in walk(folder):
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _memory_and_tasks(pids: list[int]) -> tuple[int, int]:
    """Resident bytes and tasks (threads) of these processes."""
    page, resident, tasks = os.sysconf("SC_PAGE_SIZE"), 0, 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                resident += int(f.read().split()[1]) * page
            tasks += len(os.listdir(f"/proc/{pid}/task"))
        except (OSError, ValueError, IndexError):
            continue
    return resident, tasks
