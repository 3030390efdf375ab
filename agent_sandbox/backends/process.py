"""A sandbox that is one host process (bubblewrap, `docker run`): its pipes are the agent's streams."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import IO

from agent_sandbox.backends.contract import MAX_LINE, Sandbox, Streams


class ProcessSandbox(Sandbox):
    """A sandbox that is one host process (bubblewrap, `docker run`): its pipes are the streams."""

    proc: subprocess.Popen | None = None

    def spawn(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> Streams:
        # A session of its own: stopping it reaches every process it started.
        proc = self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds)
        assert proc.stdout is not None and proc.stderr is not None   # (PIPE)
        return Streams(pipe_lines(proc.stdout), pipe_lines(proc.stderr), proc.stdin)

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def wait(self) -> int | None:
        return self.proc.wait() if self.proc is not None else None


def pipe_lines(pipe: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary pipe; of a line longer than MAX_LINE, its first MAX_LINE bytes."""
    while line := pipe.readline(MAX_LINE):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (rest := pipe.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
        yield line
