"""The backend contract: what a backend implements, and the one lifecycle that drives it.

A backend is a `Backend` that makes one `Sandbox` per run; every hook of both is
declared here, with its default, so callers never look one up with getattr. A
backend says only what is particular to it: how to create the sandbox and start
the agent in it (`create`, `start`), what the agent's streams are (`Streams`),
whether it has exited (`poll`, `wait`), how to stop it (`stop`), how to end it
so its outputs are complete (`end`), where those are (`outputs`) and what to
clean up (`close`). `Backend.run` drives it the same way on every backend:

- fail early: a missing workspace, or the sandbox failing to be created or to
  start the agent, ends the run with an `error` event, then a `result` event
  (status "error");
- stream: one reader thread per stream turns each line into an event (a host
  event type coming from the sandbox is forged: it is kept as raw text);
- wait: until the agent exits or its streams end, checking the cancel flag and
  the whole-run and no-output limits; when one of them says so, stop the
  sandbox with that status and reason;
- finish: end the sandbox, decide the final status, collect the outputs into
  spec.results with manifest.json, send the `result` event, return a RunResult;
- and always close the sandbox (a signal waits until it is closed).

The run's bookkeeping (events, the agent's stdin, the relay, limits, the
verdict) is the `RunMonitor` every hook gets (monitor.py). A third-party
backend subclasses `Backend` and `Sandbox` and proves itself with the
conformance suite (`agent_sandbox.testing`).
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, ClassVar, Protocol

from agent_sandbox.backends.monitor import POLL, READER_GRACE, EventCallback, RunMonitor
from agent_sandbox.events import Status
from agent_sandbox.outputs import OutputSource
from agent_sandbox.spec import RunResult, RunSpec

__all__ = ["MAX_LINE", "Backend", "agent_command", "EventCallback", "RunMonitor", "Sandbox", "SandboxError", "SandboxLost",
           "Streams"]

MAX_LINE = 1024 * 1024  # bytes of one line from the sandbox kept as one event
# How the agent starts, on every backend (`agent_command`): its package's folder first on the
# path, given explicitly, and nothing else of the environment.
AGENT_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
              "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")
AGENT_MODULE = "agent_sandbox.agent"   # a word of its own in the command line: `ps` shows what runs


def agent_command(python: str, package_root: str, args: list[str]) -> list[str]:
    """The one way every backend starts the agent (to run from `/`, never /workspace).

    `python -I`: neither the working folder nor PYTHONPATH nor the user's site is on its path,
    and no PYTHON* variable applies, so nothing a command or an upload put in /workspace (an
    `agent_sandbox/` package, a sitecustomize.py) can run in its place; `package_root` is
    the read-only folder holding the agent_sandbox package inside the sandbox."""
    return [python, "-I", "-c", AGENT_BOOT, package_root, AGENT_MODULE, *args]


class SandboxError(Exception):
    """The sandbox could not run the job: the run ends with status "error" and this message."""


class SandboxLost(SandboxError):
    """The sandbox went away under the agent (raised by `Sandbox.wait`)."""


@dataclass
class Streams:
    """What `Sandbox.start` gives back: the agent's output lines and, if any, its stdin.

    With a stdin the agent is started with --secrets-from-stdin: the monitor writes
    the secrets as its first line, and may write more lines during the run
    (`RunMonitor.send`). Without one, the backend hands the secrets over itself.
    """

    stdout: Iterable[str | bytes]
    stderr: Iterable[str | bytes]
    stdin: IO[bytes] | None = None  # binary, line by line: write() and flush()


class Sandbox(ABC):
    """One run's sandbox, as `Backend.run` drives it: `start` and `outputs` are the two
    hooks without a default.

    Exceptions of the types in `errors` (the backend's SDK, the OS) raised while
    creating or starting end the run as "error", described by `describe`.
    """

    errors: tuple[type[BaseException], ...] = (OSError,)

    def describe(self, exc: BaseException) -> str:
        return str(exc) or type(exc).__name__

    def create(self, run: RunMonitor) -> None:
        """Everything before the agent starts (checks, folders, the sandbox itself); report
        the sandbox's id with `run.status(..., sandbox_id=...)` as soon as it has one."""
        return None  # nothing, by default

    @abstractmethod
    def start(self, run: RunMonitor) -> Streams:
        """Start the agent inside; its streams."""

    def poll(self) -> int | None:
        """The agent's exit code once it has exited, else None (None: its streams tell)."""
        return None

    def wait(self) -> int | None:
        """The agent's exit code (its streams have ended); may raise SandboxLost."""
        return None

    def stop(self) -> None:
        """Stop the agent and its sandbox for real (a limit or cancel says so)."""
        return None  # nothing, by default

    def end(self) -> None:
        """Make sure the sandbox has ended, so its outputs are complete and stay so."""
        return None  # nothing, by default

    def why_ended(self) -> tuple[str, str] | None:
        """(status, reason) when the sandbox itself ended an agent that did not finish."""
        return None

    @abstractmethod
    def outputs(self) -> OutputSource:
        """What the agent left in /outputs, read without following links."""

    def close(self) -> None:
        """Clean up whatever is left (always called, once)."""
        return None  # nothing, by default


class Backend(ABC):
    """A backend: makes one Sandbox per run; `run` drives it through the one lifecycle.

        backend = get_backend("local")
        result = backend.run(spec, on_event, cancel=threading.Event())

    `run` blocks until the sandbox is gone. It calls `on_event(event)` for every
    event as it happens (agent events, raw lines, host status events), enforces
    spec.limits (whole run, no output), collects outputs into spec.results with
    manifest.json, and always cleans up. Setting `cancel` stops the sandbox for
    real and the run ends with status "cancelled".
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def sandbox(self, spec: RunSpec) -> Sandbox:
        """The sandbox of one run (nothing is started yet)."""

    def run(self, spec: RunSpec, on_event: EventCallback, cancel: threading.Event | None = None) -> RunResult:
        return drive(self.sandbox(spec), RunMonitor(spec, on_event, cancel, self.name))

    def submit(self, spec: RunSpec, on_event: EventCallback,
               cancel: threading.Event | None = None) -> concurrent.futures.Future[RunResult] | None:
        """Start the run without holding the caller's thread: a future of its RunResult. None
        (the default): this backend's runs hold a thread each, and the caller uses `run`."""
        return None

    def prepare(self) -> str | None:
        """At start-up: what is slow and done once for every run (Modal builds its image: its id)."""
        return None  # nothing, by default

    def sweep_orphans(self) -> int:
        """Stop sandboxes and remove what runs of dead processes left; returns how many sandboxes."""
        return 0

    def end_sandbox(self, sandbox_id: str) -> bool:
        """End one sandbox by the id its run reported (status event "sandbox_id"); True if it
        was still there. For cancel, shutdown and recovery when its starter is gone; never
        raises for a sandbox that has already ended."""
        return False


def drive(sandbox: Sandbox, run: RunMonitor) -> RunResult:
    """One run of `sandbox`, from its creation to its result; the sandbox is always closed."""
    if not run.spec.workspace.is_dir():
        return run.fail(f"workspace {run.spec.workspace} does not exist")
    if run.relay is not None and (problem := run.relay.access.problem()):
        return run.fail(problem)   # a missing key or a malformed endpoint: before any sandbox
    try:
        try:
            sandbox.create(run)
            run.last_output = time.monotonic()   # idleness counts from when the agent starts
            streams = None
            if why := run.stop_requested():      # cancelled while it was being created
                run.stop(*why)
            else:
                streams = sandbox.start(run)
        except SandboxError as exc:
            return run.fail(str(exc))
        except sandbox.errors as exc:
            return run.fail(sandbox.describe(exc))
        exit_code = supervise(sandbox, streams, run) if streams else None
        sandbox.end()
        status, reason = run.outcome(exit_code, sandbox.why_ended())
        return finish(sandbox, run, status, reason, exit_code)
    finally:
        with signals_held():   # a Ctrl-C must not cut the clean-up short: it comes right after
            try:
                sandbox.close()
            except sandbox.errors as exc:  # the run has its result: say so, do not undo it
                run.warn(f"could not clean up the sandbox: {sandbox.describe(exc)}")


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait while the block runs (in the main thread, where Python runs
    their handlers; other threads never get them), then are delivered."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def supervise(sandbox: Sandbox, streams: Streams, run: RunMonitor) -> int | None:
    """Give the agent its secrets, read its streams, stop it when told; its exit code."""
    run.open_input(streams.stdin)
    readers = [read_lines(streams.stdout, "stdout", run), read_lines(streams.stderr, "stderr", run)]
    try:
        while any(r.is_alive() for r in readers) and sandbox.poll() is None:
            if why := run.stop_requested():
                run.stop(*why)
                sandbox.stop()
                break
            for reader in readers:  # returns early when a stream ends
                reader.join(POLL)
    except BaseException:  # an exception (or KeyboardInterrupt) must not leave a sandbox behind
        sandbox.stop()
        raise
    finally:
        run.end_input()
    for reader in readers:
        reader.join(READER_GRACE)
    run.streams_ended(sandbox.describe)
    try:
        return sandbox.wait()
    except SandboxLost as exc:
        run.lost = run.lost or str(exc)
        return None


def read_lines(lines: Iterable[str | bytes], stream: str, run: RunMonitor) -> threading.Thread:
    """A thread feeding each line of one stream to the run."""
    def read() -> None:
        try:
            for line in lines:
                run.feed(line[:MAX_LINE], stream)  # a runaway line must not fill the host's memory
        except Exception as exc:  # a broken stream: `outcome` decides what it means
            run.stream_errors.append(exc)

    reader = threading.Thread(target=read, name=f"{run.spec.job_id}-{stream}", daemon=True)
    reader.start()
    return reader


class HasOutputs(Protocol):
    """What `finish` asks of a sandbox (a Sandbox, or Modal's stand-in for one)."""

    @property
    def errors(self) -> tuple[type[BaseException], ...]: ...
    def outputs(self) -> OutputSource: ...
    def describe(self, exc: BaseException) -> str: ...


def finish(sandbox: HasOutputs, run: RunMonitor, status: str, reason: str, exit_code: int | None) -> RunResult:
    """Collect the outputs, send the result event; the RunResult."""
    run.status(Status.COLLECTING, "collecting outputs")
    try:
        manifest = run.collect(sandbox.outputs(), status, reason)
    except (OSError, *sandbox.errors) as exc:  # type: ignore[misc]  # (a tuple built at run time)
        problem = f"could not read the outputs: {sandbox.describe(exc)}"
        if status == Status.SUCCEEDED:
            status, reason = Status.ERROR, problem
        manifest = run.collect(NoOutputs(), status, reason)
        run.error(problem)
    return run.result(status, reason, exit_code, manifest)


class NoOutputs:
    """What is left when the outputs cannot be read: nothing."""

    def entries(self) -> list:
        return []

    def open(self, path: str):
        raise OSError(path)
