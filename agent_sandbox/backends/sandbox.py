"""What a backend implements: one run's `Sandbox`, as `RunMonitor.run` drives it.

A backend says only what is particular to it: how to create the sandbox and
start the agent in it (`create`, `start`), what the agent's streams are
(`Streams`), whether it has exited (`poll`, `wait`), how to stop it (`stop`),
how to end it so its outputs are complete (`end`), where those are
(`outputs`) and what to clean up (`close`). `ProcessSandbox` does the part
shared by sandboxes that are one host process (bubblewrap, `docker run`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Iterable, Iterator

from agent_sandbox.outputs import OutputSource

if TYPE_CHECKING:
    from agent_sandbox.backends.monitor import RunMonitor

MAX_LINE = 1024 * 1024  # bytes of one line from the sandbox kept as one event


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


class Sandbox:
    """One run's sandbox, as `RunMonitor.run` drives it; backends override what they need.

    Exceptions of the types in `errors` (the backend's SDK, the OS) raised while
    creating or starting end the run as "error", described by `describe`.
    """

    errors: tuple[type[BaseException], ...] = (OSError,)

    def describe(self, exc: BaseException) -> str:
        return str(exc) or type(exc).__name__

    def create(self, run: RunMonitor) -> None:
        """Everything before the agent starts (checks, folders, the sandbox itself)."""

    def start(self, run: RunMonitor) -> Streams:
        """Start the agent inside; its streams."""
        raise NotImplementedError

    def poll(self) -> int | None:
        """The agent's exit code once it has exited, else None (None: its streams tell)."""
        return None

    def wait(self) -> int | None:
        """The agent's exit code (its streams have ended); may raise SandboxLost."""
        return None

    def stop(self) -> None:
        """Stop the agent and its sandbox for real (a limit or cancel says so)."""

    def end(self) -> None:
        """Make sure the sandbox has ended, so its outputs are complete and stay so."""

    def why_ended(self) -> tuple[str, str] | None:
        """(status, reason) when the sandbox itself ended an agent that did not finish."""
        return None

    def outputs(self) -> OutputSource:
        raise NotImplementedError

    def close(self) -> None:
        """Clean up whatever is left (always called, once)."""


class ProcessSandbox(Sandbox):
    """A sandbox that is one host process (bubblewrap, `docker run`): its pipes are the streams."""

    proc: subprocess.Popen | None = None

    def spawn(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> Streams:
        # A session of its own: stopping it reaches every process it started.
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds)
        return Streams(pipe_lines(self.proc.stdout), pipe_lines(self.proc.stderr), self.proc.stdin)

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self) -> int | None:
        return self.proc.wait()


def pipe_lines(pipe: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary pipe; of a line longer than MAX_LINE, its first MAX_LINE bytes."""
    while line := pipe.readline(MAX_LINE):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (rest := pipe.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
        yield line
