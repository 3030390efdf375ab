"""Run one command for the agent: capped output, live streaming, a timeout that
kills the whole process tree, and an environment without secrets.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from agent_sandbox.agent.models import Observation

if TYPE_CHECKING:
    from agent_sandbox.agent.command_limits import CommandLimits
from agent_sandbox.process_group import signal_group

SECRET_PATTERN = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
OutputCallback = Callable[[str, str], None]  # (stream, text)


def secret_names(environ: dict[str, str]) -> set[str]:
    """Names to hide from commands: the patterns plus AGENT_SANDBOX_SECRET_NAMES (comma list)."""
    extra = {n.strip() for n in environ.get("AGENT_SANDBOX_SECRET_NAMES", "").split(",") if n.strip()}
    return {name for name in environ if SECRET_PATTERN.search(name) or name in extra}


def command_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for agent commands: ours minus every secret, Python first on PATH."""
    environ = dict(os.environ if environ is None else environ)
    for name in secret_names(environ):
        del environ[name]
    environ.pop("AGENT_SANDBOX_SECRET_NAMES", None)
    bindir = str(Path(sys.executable).parent)
    path = environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if bindir not in path.split(":"):
        environ["PATH"] = f"{bindir}:{path}"
    environ.setdefault("MPLBACKEND", "Agg")
    environ["PYTHONUNBUFFERED"] = "1"
    # Scripts often live in the outputs folder: no __pycache__ among the results.
    environ["PYTHONDONTWRITEBYTECODE"] = "1"
    return environ


_subreaper = False


def become_subreaper() -> None:
    """Orphans of our commands get re-parented to us, so a timeout can find and
    kill a grandchild that detached itself with setsid or a double fork.
    Only the agent process does this: it runs one command at a time, so every
    descendant it has is that command's."""
    global _subreaper
    try:
        _subreaper = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        _subreaper = False


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, found through /proc (children first listed last)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the command, its process group and its descendants (as subreaper:
    also the orphans it left, which are now our children)."""
    victims = descendants(proc.pid)
    signal_group(proc.pid, signal.SIGKILL)
    if _subreaper:
        victims += descendants(os.getpid())
    for pid in [proc.pid] + victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _Capture:
    """Keeps the first `limit` characters of a command's output, shared by both streams."""

    def __init__(self, limit: int, on_output: OutputCallback | None):
        self.limit = limit
        self.on_output = on_output
        self.parts: list[str] = []
        self.kept = 0
        self.truncated = False
        self.lock = threading.Lock()

    def add(self, stream: str, text: str) -> None:
        with self.lock:
            room = self.limit - self.kept
            if room <= 0:
                self.truncated = True
                return
            if len(text) > room:
                text, self.truncated = text[:room], True
            self.kept += len(text)
            self.parts.append(text)
            if self.on_output:
                self.on_output(stream, text)


def _pump(pipe, stream: str, capture: _Capture) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    fd = pipe.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += decoder.decode(chunk)
        # Send whole lines as they come; a long line without newline goes out in pieces.
        cut = pending.rfind("\n") + 1 if "\n" in pending else (len(pending) if len(pending) > 4096 else 0)
        if cut:
            capture.add(stream, pending[:cut])
            pending = pending[cut:]
    pending += decoder.decode(b"", final=True)
    if pending:
        capture.add(stream, pending)
    pipe.close()


def run_command(argv: list[str], *, cwd: str, timeout: float, max_chars: int,
                env: dict[str, str] | None = None,
                on_output: OutputCallback | None = None,
                stop: threading.Event | None = None, limits: CommandLimits | None = None) -> Observation:
    """Run argv; stream its output; kill its whole tree at `timeout` or when `stop` is set;
    with `limits` (command_limits.py), under the limits the agent holds commands to."""
    started = time.monotonic()
    capture = _Capture(max_chars, on_output)
    held = limits.prepare_command() if limits else {}
    proc = subprocess.Popen(argv, cwd=cwd, env=limits.env(command_env(env)) if limits else command_env(env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **held)
    watch = limits.watch(proc) if limits else None
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, "stdout", capture), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, "stderr", capture), daemon=True)]
    for t in pumps:
        t.start()
    timed_out = False
    deadline = started + timeout
    while proc.poll() is None:
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            timed_out = time.monotonic() >= deadline
            kill_tree(proc)
            break
        time.sleep(0.05)
    proc.wait()
    if watch is not None:
        watch.stop()
    # A background child may still hold the pipes open: give it a moment, then kill it.
    for t in pumps:
        t.join(timeout=max(0.0, min(2.0, deadline - time.monotonic())))
    if any(t.is_alive() for t in pumps):
        kill_tree(proc)
        for t in pumps:
            t.join(timeout=2.0)
    return Observation(exit_code=-9 if timed_out else proc.returncode,
                       output="".join(capture.parts), truncated=capture.truncated,
                       timed_out=timed_out, duration=time.monotonic() - started)
