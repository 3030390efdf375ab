"""What every backend does while a sandbox runs, whatever the sandbox is.

`RunMonitor` turns the sandbox's stdout/stderr lines into events, forwards them,
watches the whole-run and no-output limits and the cancel flag, and decides the
final status. A backend feeds it lines, asks `should_stop()` while waiting, and
stops the sandbox when told to.

For an API model the monitor also holds the job's `ModelRelay`: the agent's
model requests go to it instead of the event log, and the backend gives it a
way to write the replies to the agent's stdin (`relay.attach`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Iterable

from agent_sandbox import events as ev
from agent_sandbox.backends import EventCallback
from agent_sandbox.relay import ModelAccess, ModelRelay
from agent_sandbox.spec import RunSpec

STDERR_TAIL = 20
MAX_LINE = 1024 * 1024  # bytes of one line from the sandbox kept as one event


class RunMonitor:
    def __init__(self, spec: RunSpec, on_event: EventCallback, cancel: threading.Event | None):
        self.spec = spec
        self.on_event = on_event
        self.cancel = cancel or threading.Event()
        self.started = time.monotonic()
        self.last_output = self.started
        self.final: dict[str, Any] | None = None   # the agent's run_finished data
        self.stopped: tuple[str, str] | None = None  # (status, reason) when the host stopped it
        self.stderr_tail: list[str] = []
        self._lock = threading.Lock()
        # An API model's endpoint and key: the spec's, else this process's environment.
        access = spec.model_access or ModelAccess.from_env(spec.model, dict(os.environ))
        self.relay = ModelRelay(access, spec.limits.max_tokens, self.emit) if access is not None else None

    def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        self.forward(ev.make_event(type, data))

    def status(self, status: str, message: str = "") -> None:
        self.emit(ev.STATUS, {"status": status, "message": message})

    def forward(self, event: dict[str, Any]) -> None:
        with self._lock:  # stdout and stderr readers call in from two threads
            self.on_event(event)

    def feed(self, line: str | bytes, stream: str = "stdout") -> None:
        event = ev.parse_line(line, stream)
        if event["type"] == ev.MODEL_REQUEST and stream == "stdout":
            self.last_output = time.monotonic()
            if self.relay is not None:   # never stored: the conversation is not part of the log
                self.relay.handle(event)
            return
        if event["type"] not in ev.AGENT_TYPES and event["type"] != ev.RAW:
            # Only the host writes host events (status, result): from the sandbox
            # such a line is forged, so it is kept as plain text.
            event = ev.make_event(ev.RAW, {"stream": stream, "text": ev.encode(event)})
        self.last_output = time.monotonic()
        if event["type"] == ev.RAW and stream == "stderr":
            self.stderr_tail = (self.stderr_tail + [event["data"]["text"]])[-STDERR_TAIL:]
        if event["type"] == ev.RUN_FINISHED:
            self.final = event["data"]
        self.forward(event)

    def pump(self, lines: Iterable[str | bytes], stream: str) -> None:
        """Feed every line of one stream (run it in a thread per stream)."""
        for line in lines:
            if len(line) > MAX_LINE:  # a runaway line must not fill the host's memory or store
                line = line[:MAX_LINE]
            self.feed(line, stream)

    def pump_file(self, pipe, stream: str) -> None:
        """`pump` over a binary pipe: at most MAX_LINE bytes of a line are kept, the rest dropped."""
        while line := pipe.readline(MAX_LINE):
            if len(line) == MAX_LINE and not line.endswith(b"\n"):
                while (rest := pipe.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
            self.feed(line, stream)

    def supervise(self, argv: list[str], env: dict[str, str],
                  stop: Callable[[subprocess.Popen], None], pass_fds: tuple[int, ...] = (),
                  on_start: Callable[[subprocess.Popen], None] | None = None) -> int | None:
        """Start the sandbox process, give the agent its secrets on stdin (one JSON
        line: never in an environment or a command line), stream both outputs, and
        call `stop(proc)` when a limit or cancel says so. Returns the exit code.
        With a model relay, stdin stays open for its replies. `on_start(proc)` runs
        once the process is started (e.g. to give it a network)."""
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds)
        try:
            proc.stdin.write((json.dumps(self.spec.secrets) + "\n").encode())
            proc.stdin.flush()
            if self.relay is not None:
                self.relay.attach(lambda line: (proc.stdin.write(line.encode()), proc.stdin.flush()))
            else:
                proc.stdin.close()
        except BrokenPipeError:
            pass
        readers = [threading.Thread(target=self.pump_file, args=(proc.stdout, "stdout"), daemon=True),
                   threading.Thread(target=self.pump_file, args=(proc.stderr, "stderr"), daemon=True)]
        for r in readers:
            r.start()
        try:
            if on_start is not None:
                on_start(proc)
            while proc.poll() is None:
                if self.should_stop():
                    stop(proc)
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:  # an exception (or KeyboardInterrupt) must not leave a sandbox behind
                stop(proc)
            proc.wait()
            for r in readers:
                r.join(timeout=5)
            if self.relay is not None:
                self.relay.close()
            try:
                proc.stdin.close()
            except OSError:
                pass
        return proc.returncode

    def should_stop(self) -> tuple[str, str] | None:
        """(status, reason) if the sandbox must be stopped now, else None."""
        if self.stopped:
            return self.stopped
        limits = self.spec.limits
        now = time.monotonic()
        if self.cancel.is_set():
            self.stopped = (ev.CANCELLED, "cancelled by the user")
        elif now - self.started > limits.run_timeout:
            self.stopped = (ev.TIMEOUT, f"the run took longer than {limits.run_timeout:g}s")
        elif now - self.last_output > limits.idle_timeout:
            self.stopped = (ev.IDLE_TIMEOUT, f"no output for {limits.idle_timeout:g}s")
        return self.stopped

    def outcome(self, exit_code: int | None) -> tuple[str, str]:
        """The final (status, reason) once the sandbox is gone."""
        if self.relay is not None:
            self.relay.close()
        if self.stopped:
            return self.stopped
        if self.relay is not None and self.relay.refused:
            # The host's count, whatever the agent said about it.
            return ev.FAILED, self.relay.refused
        if self.final is not None:
            status = self.final.get("status", ev.FAILED)
            if status not in ev.FINAL_STATUSES:
                status = ev.FAILED
            return status, self.final.get("reason", "")
        tail = " | ".join(self.stderr_tail[-3:])
        killed = killed_by(exit_code)
        if killed:   # not a crash of ours: something in the sandbox (or its limits) killed the agent
            return ev.FAILED, f"the agent was killed by {killed} without finishing" + (f": {tail}" if tail else "")
        return ev.ERROR_STATUS, (f"the agent exited with code {exit_code} without finishing"
                                 + (f": {tail}" if tail else ""))

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started

    @property
    def usage(self) -> dict[str, int]:
        return dict(self.relay.usage) if self.relay is not None else {}

    @property
    def summary(self) -> str:
        return str((self.final or {}).get("summary") or "")

    def result_event(self, status: str, reason: str, manifest: dict) -> None:
        if self.relay is not None:
            self.relay.close()
        data = {"status": status, "reason": reason, "files": len(manifest.get("files", [])),
                "skipped": len(manifest.get("skipped", [])), "duration": round(self.duration, 3)}
        if self.relay is not None:
            data["usage"] = self.usage
        self.emit(ev.RESULT, data)


def killed_by(exit_code: int | None) -> str:
    """The signal's name when an exit code says a signal ended the process (-N from
    Popen, 128+N from a shell, docker or Modal), else ""."""
    if exit_code is None:
        return ""
    number = -exit_code if exit_code < 0 else exit_code - 128 if 128 < exit_code < 160 else 0
    try:
        return signal.Signals(number).name if number else ""
    except ValueError:
        return f"signal {number}"
