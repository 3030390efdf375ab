"""Run one command for the agent: capped output, live streaming, a timeout that
kills the whole process tree, and an environment without secrets.
"""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent_sandbox.agent.models import Observation

if TYPE_CHECKING:
    from agent_sandbox.agent.command_limits import CommandLimits
from agent_sandbox.agent.process_tree import kill_tree

FULL_OUTPUT_BYTES = 64 * 1024 * 1024   # of one command's output kept in its file for the model
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


class _Tail:
    """The last `limit` characters of a stream of (stream, text) pieces."""

    def __init__(self, limit: int):
        self.limit = limit
        self.pieces: deque[tuple[str, str]] = deque()
        self.size = 0

    def add(self, stream: str, text: str) -> None:
        text = text[-self.limit:] if self.limit else ""
        self.pieces.append((stream, text))
        self.size += len(text)
        while self.size > self.limit:
            first_stream, first = self.pieces.popleft()
            over = self.size - self.limit
            self.size -= len(first)
            if over < len(first):
                self.pieces.appendleft((first_stream, first[over:]))
                self.size += len(first) - over

    def text(self) -> str:
        return "".join(text for _, text in self.pieces)

    def last(self, n: int) -> list[tuple[str, str]]:
        pieces: list[tuple[str, str]] = []
        for stream, text in reversed(self.pieces):
            if n <= 0:
                break
            pieces.append((stream, text[-n:]))
            n -= len(pieces[-1][1])
        return pieces[::-1]


class _Capture:
    """A command's output, both streams interleaved: its head and its tail, and all of it in a file.

    The first `limit` characters stream to `on_output` as they come (the live log). The
    model gets the head (2/5 of `limit`) and the tail (3/5: a failing command's error is at
    its end) with how much was elided between them, and the end of stderr when the
    interleaved tail lost it (the two streams are read by two threads: a traceback can
    arrive before the last of stdout); `finish` sends the log the end it did not see. The
    whole output goes to `full_path` (up to FULL_OUTPUT_BYTES), where the model can tail
    or grep it."""

    def __init__(self, limit: int, on_output: OutputCallback | None, full_path: Path | None = None):
        self.limit = limit
        self.head_limit = limit * 2 // 5
        self.on_output = on_output
        self.head: list[str] = []
        self.head_size = 0
        self.tail = _Tail(limit - self.head_limit)        # after the head
        self.errors = _Tail((limit - self.head_limit) // 3)   # the end of stderr alone
        self.total = 0                                     # characters seen
        self.lock = threading.Lock()
        self.file = self._open(full_path)
        self.file_bytes = 0

    @staticmethod
    def _open(path: Path | None):
        if path is None:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path, "w", encoding="utf-8", errors="replace")
        except OSError:
            return None

    def add(self, stream: str, text: str) -> None:
        with self.lock:
            self._keep_all(text)
            if self.on_output and self.total < self.limit:
                self.on_output(stream, text[:self.limit - self.total])
            self.total += len(text)
            if stream == "stderr":
                self.errors.add(stream, text)
            room = self.head_limit - self.head_size
            if room > 0:
                self.head.append(text[:room])
                self.head_size += len(self.head[-1])
                text = text[room:]
            if text:
                self.tail.add(stream, text)

    def _keep_all(self, text: str) -> None:
        if self.file is None or self.file_bytes >= FULL_OUTPUT_BYTES:
            return
        data = text.encode("utf-8", errors="replace")[:FULL_OUTPUT_BYTES - self.file_bytes]
        try:
            self.file.write(data.decode("utf-8", errors="ignore"))
            self.file_bytes += len(data)
            if self.file_bytes >= FULL_OUTPUT_BYTES:
                self.file.write(f"\n[the rest was not kept: over {FULL_OUTPUT_BYTES // 2**20} MiB]\n")
        except OSError:   # the sandbox's disk is full: the file stops, the capture goes on
            self.file_bytes = FULL_OUTPUT_BYTES

    @property
    def elided(self) -> int:
        return self.total - self.head_size - self.tail.size

    def output(self) -> str:
        middle = f"\n[... {self.elided:,} characters elided ...]\n" if self.elided else ""
        return "".join(self.head) + middle + self.tail.text() + self.lost_errors()

    def lost_errors(self) -> str:
        """The end of stderr, when neither the head nor the tail holds it."""
        if not self.errors.pieces:
            return ""
        latest = self.errors.pieces[-1][1][-200:]   # the last thing written to stderr
        if latest in self.tail.text() or (not self.tail.size and latest in "".join(self.head)):
            return ""
        return f"\n[the end of stderr:]\n{self.errors.text()}"

    def finish(self) -> None:
        """Close the file; give the live log the end of an output it saw only the start of."""
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        if self.on_output is None or self.total <= self.limit:
            return
        unseen = min(self.tail.size, self.total - self.limit)   # the tail's part past what was streamed
        self.on_output("stdout", f"\n[... {self.total - self.limit - unseen:,} characters not shown; the end:]\n")
        for stream, text in self.tail.last(unseen):
            self.on_output(stream, text)
        if lost := self.lost_errors():
            self.on_output("stderr", lost)


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
                stop: threading.Event | None = None,
                full_output: Path | None = None, limits: CommandLimits | None = None) -> Observation:
    """Run argv; stream its output; kill its whole tree at `timeout` or when `stop` is set.
    The whole output goes to the file `full_output` (when given); with `limits`
    (command_limits.py), the command runs under the limits the agent holds commands to."""
    started = time.monotonic()
    capture = _Capture(max_chars, on_output, full_output)
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
    capture.finish()
    return Observation(exit_code=-9 if timed_out else proc.returncode, output=capture.output(),
                       truncated=capture.elided > 0, timed_out=timed_out, duration=time.monotonic() - started,
                       elided=capture.elided, total_chars=capture.total,
                       full_output=str(full_output) if capture.file is not None else "")
