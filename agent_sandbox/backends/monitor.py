"""One run's bookkeeping, whatever the sandbox: `RunMonitor`.

`Backend.run` (contract.py) drives a backend's `Sandbox` through the one
lifecycle and hands every hook this monitor: the run's spec, its cancel flag
and limits (`stop_requested`), its events (`emit`, `status`, `feed` for each
line the agent writes), the agent's stdin, and at the end the verdict
(`outcome`), the outputs collected (`collect`) and the result (`result`).

Where the sandbox gives the agent's stdin, its first line is the secrets
(never in an environment or a command line); `send` writes further lines while
it is open. For an API model the monitor holds the job's `ModelRelay`
(agent_sandbox.relay.host): the agent's `model_request` lines go to it instead of
the event log, stdin stays open, and the relay's replies go in with `send`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from agent_sandbox import events as ev
from agent_sandbox.events import Status
from agent_sandbox.outputs import OutputSource, collect_outputs
from agent_sandbox.relay.host import ModelAccess, ModelRelay
from agent_sandbox.spec import RunResult, RunSpec

log = logging.getLogger(__name__)
EventCallback = Callable[[dict[str, Any]], None]
STDERR_TAIL = 20
POLL = 0.025            # seconds between checks of the limits while the agent runs
READER_GRACE = 10.0     # seconds the streams may take to end once the agent has


class RunMonitor:
    def __init__(self, spec: RunSpec, on_event: EventCallback, cancel: threading.Event | None,
                 backend: str = ""):
        self.spec = spec
        self.backend = backend
        self.on_event = on_event
        self.cancel = cancel or threading.Event()
        self.started = time.monotonic()
        self.last_output = self.started
        self.final: dict[str, Any] | None = None     # the agent's run_finished data
        self.stopped: tuple[str, str] | None = None  # (status, reason) once the host stopped the run
        self.sandbox_id = ""                          # as the backend reported it (status event)
        self.stderr_tail: list[str] = []
        self.stream_errors: list[BaseException] = []
        self.lost: str | None = None                 # why the agent's output or exit status was lost
        self._lock = threading.Lock()
        self._stdin: IO[bytes] | None = None
        self._stdin_lock = threading.Lock()
        # An API model's endpoint and key: the spec's, else this process's environment.
        access = spec.model_access or ModelAccess.from_env(spec.model, dict(os.environ))
        self.relay = ModelRelay(access, spec.limits.max_tokens, self.emit, spec.limits.model_timeout) \
            if access is not None else None

    # -- events ---------------------------------------------------------------

    def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        self.forward(ev.make_event(type, data))

    def status(self, status: str, message: str = "", sandbox_id: str = "") -> None:
        """A status event; `sandbox_id` once the sandbox exists (or its name is reserved), before
        the agent starts: whoever stores it can end the sandbox by it if this process dies."""
        data = {"status": status, "message": message}
        if sandbox_id:
            self.sandbox_id = data["sandbox_id"] = sandbox_id
        self.emit(ev.STATUS, data)

    def warn(self, message: str) -> None:
        self.emit(ev.WARNING, {"message": message})

    def error(self, message: str) -> None:
        self.emit(ev.ERROR, {"message": message})

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

    # -- the agent's stdin --------------------------------------------------------

    def open_input(self, stdin: IO[bytes] | None) -> None:
        """The agent's stdin, once it runs: its first line is the secrets, then the relay's
        replies while it lasts. None: the backend handed the secrets over itself."""
        self._stdin = stdin
        if stdin is None:
            return
        self.send(json.dumps(self.spec.secrets))
        if self.relay is not None:   # the relay's replies follow, one line each
            self.relay.attach(lambda line: self.send(line.rstrip("\n")))
        else:
            self.close_input()  # nothing more to say to the agent

    def end_input(self) -> None:
        """The agent has stopped (or is being stopped): no more model calls, stdin closed."""
        if self.relay is not None:
            self.relay.close()
        self.close_input()

    def send(self, line: str) -> bool:
        """Write one line to the agent's stdin; False when it is closed or gone."""
        with self._stdin_lock:
            if self._stdin is None:
                return False
            try:
                self._stdin.write(line.encode() + b"\n")
                self._stdin.flush()
                return True
            except (OSError, ValueError):  # the agent has exited
                self._stdin = None
                return False

    def close_input(self) -> None:
        with self._stdin_lock:
            stdin, self._stdin = self._stdin, None
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass

    # -- limits and stopping ------------------------------------------------------

    def stop_requested(self, idle: bool = True) -> tuple[str, str] | None:
        """(status, reason) if cancel or a limit says the run must stop now, else None.
        Without `idle`, only cancel and the run timeout (while the sandbox is being made)."""
        limits, now = self.spec.limits, time.monotonic()
        if self.cancel.is_set():
            return Status.CANCELLED, "cancelled by the user"
        if now - self.started > limits.run_timeout:
            return Status.TIMEOUT, f"the run took longer than {limits.run_timeout:g}s"
        if idle and now - self.last_output > limits.idle_timeout:
            return Status.IDLE_TIMEOUT, f"no output for {limits.idle_timeout:g}s"
        return None

    def stop(self, status: str, reason: str) -> None:
        """Record that the host ended the run; the first reason given is the one kept."""
        if self.stopped is None:
            self.stopped = (status, reason)

    # -- the verdict ------------------------------------------------------------------

    def streams_ended(self, describe: Callable[[BaseException], str]) -> None:
        """The agent's streams are over: note what a cancel or a broken stream means."""
        if self.final is None and self.cancel.is_set():
            # Ended unfinished while a cancel stood: the host's doing (e.g. its sandbox ended by
            # id at shutdown before the lifecycle saw the flag), not the agent's.
            self.stop(Status.CANCELLED, "cancelled by the user")
        # A broken stream or a lost exit status is not the verdict yet: the sandbox may
        # have ended under the agent (its time limit, someone else), which `outcome` asks
        # it once it is over. Either way the run goes on to the normal finish.
        if self.stream_errors:
            self.lost = f"lost the agent's output stream: {describe(self.stream_errors[0])}"

    def fail(self, reason: str) -> RunResult:
        """End the run before the agent ran: an error event, then the result."""
        self.error(reason)
        self.result_event(Status.ERROR, reason, {})
        return RunResult(status=Status.ERROR, reason=reason, duration=self.duration, sandbox_id=self.sandbox_id)

    def outcome(self, exit_code: int | None, ended: tuple[str, str] | None = None) -> tuple[str, str]:
        """The final (status, reason) once the sandbox is gone."""
        if self.relay is not None:
            self.relay.close()
        if self.stopped:
            return self.stopped
        if self.relay is not None and self.relay.refused:
            # The host's count, whatever the agent said about it.
            return Status.FAILED, self.relay.refused
        if self.final is not None:
            status = self.final.get("status", Status.FAILED)
            if status not in ev.RUN_END:
                status = Status.FAILED
            return Status(status), self.final.get("reason", "")
        if ended:
            return ended
        if self.lost:
            return Status.ERROR, self.lost
        tail = " | ".join(self.stderr_tail[-3:])
        killed = killed_by(exit_code)
        if killed:   # not a crash of ours: something in the sandbox (or its limits) killed the agent
            return Status.FAILED, f"the agent was killed by {killed} without finishing" + (f": {tail}" if tail else "")
        return Status.ERROR, (f"the agent exited with code {exit_code} without finishing"
                              + (f": {tail}" if tail else ""))

    def collect(self, source: OutputSource, status: str, reason: str) -> dict[str, Any]:
        """Bring the outputs back into spec.results; the manifest (its "run" says how it ended)."""
        return collect_outputs(source, self.spec.results, self.spec.limits, run=self.record(status, reason))

    def result(self, status: str, reason: str, exit_code: int | None, manifest: dict[str, Any]) -> RunResult:
        """The result event, and the RunResult, once the outputs are collected."""
        self.check_nothing_lost(manifest)
        self.result_event(status, reason, manifest)
        return RunResult(status=status, reason=reason, exit_code=exit_code, duration=self.duration,
                         manifest=manifest, usage=self.usage, summary=self.summary, sandbox_id=self.sandbox_id)

    def record(self, status: str, reason: str = "") -> dict[str, str]:
        """The manifest's "run": how the run ended (partial outputs say so), on which sandbox."""
        return {"status": str(status), "reason": reason, "backend": self.backend, "sandbox_id": self.sandbox_id}

    def check_nothing_lost(self, manifest: dict) -> None:
        """Say so when the agent left files but none were there to collect (e.g. a Modal
        volume that did not sync), rather than return nothing without a word."""
        left = (self.final or {}).get("output_files")
        if not isinstance(left, int) or left <= 0:
            return
        # Only what is not accounted for: a file skipped (over a limit, a failed download) is listed.
        found = len(manifest.get("files", [])) + sum(1 for s in manifest.get("skipped", [])
                                                      if not s.get("reason", "").startswith(("symlink", "not a regular")))
        lost = left - found
        if lost <= 0:
            return
        message = (f"the agent left {left} file{'s' if left > 1 else ''} in /outputs, but the sandbox's "
                   f"storage held {'none' if found == 0 else f'only {found}'} when the outputs were collected: "
                   f"{lost} {'are' if lost > 1 else 'is'} lost")
        log.warning("job %s: %s", self.spec.job_id, message)
        self.warn(message)

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started

    @property
    def usage(self) -> dict[str, int]:
        """Model calls and tokens, as the relay counted them ({} without one)."""
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
