"""The replay runtime: a recorded agent run played in every sandbox, no process started.

For measuring the client and web side at a scale this machine cannot run
sandboxes at (a thousand jobs on 2 cores): `python -m modal_emulator --runtime
replay --replay RECORDING` answers every exec of the agent (`python -m
agent_sandbox.agent ...`) with the recording: its stdout and stderr lines at
the times they were recorded (each event's `ts` made the time it is played,
so latencies measured from it stay true), its files written into the
sandbox's /outputs volume copy when they were written, then its exit code.
Its stdin is taken and dropped. Any other exec fails with 127 and says why.
Sandboxes get a plain folder (no capped filesystem, no image mounts): nothing
runs in them.

A recording is JSON lines, made from a real run of the agent:

    python -m modal_emulator.replay record RECORDING --outputs DIR -- COMMAND...

    {"t": 0.41, "fd": 1, "line": "{\"v\":1,...}\\n"}   a line of output, t seconds after the start
    {"t": 1.20, "file": "hello.txt", "data": "aGVsbG8K"}   a file it left in --outputs (base64)
    {"t": 1.25, "exit": 0}                               how it ended
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("modal_emulator")
TS = re.compile(rb'"ts":\s*[0-9.eE+-]+')
AGENT_MODULE = "agent_sandbox.agent"


@dataclass
class Recording:
    lines: list[tuple[float, int, bytes]] = field(default_factory=list)   # (t, fd, line)
    files: list[tuple[float, str, bytes]] = field(default_factory=list)   # (t, path under /outputs, data)
    exit_at: float = 0.0
    exit_code: int = 0

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        recording = cls()
        for number, text in enumerate(Path(path).read_text().splitlines(), 1):
            try:
                item = json.loads(text)
                if "line" in item:
                    recording.lines.append((float(item["t"]), int(item["fd"]), item["line"].encode()))
                elif "file" in item:
                    recording.files.append((float(item["t"]), _relative(item["file"]),
                                            base64.b64decode(item["data"])))
                elif "exit" in item:
                    recording.exit_at, recording.exit_code = float(item["t"]), int(item["exit"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a recording line ({exc})") from None
        return recording


class ReplayProcess:
    """What asyncio.subprocess.Process offers the emulator's Exec, played from a recording."""

    pid = -1   # no process: nothing to signal

    def __init__(self, recording: Recording | None, outputs: Path | None, stdout: bool, stderr: bool):
        self.stdin = _Drain()
        self.stdout = asyncio.StreamReader() if stdout else None
        self.stderr = asyncio.StreamReader() if stderr else None
        self.returncode: int | None = None
        self._ended = asyncio.Event()
        self._task = asyncio.create_task(self._play(recording, outputs))

    async def wait(self) -> int:
        await self._ended.wait()
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self._task.cancel()
            self._end(-9)

    async def _play(self, recording: Recording | None, outputs: Path | None) -> None:
        if recording is None:
            self._feed(2, b"replay runtime: only the agent's recorded run plays here\n")
            return self._end(127)
        started = time.monotonic()
        steps = sorted([(t, 0, fd, line) for t, fd, line in recording.lines]
                       + [(t, 1, path, data) for t, path, data in recording.files], key=lambda s: (s[0], s[1]))
        for at, kind, where, what in steps:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if kind == 0:
                self._feed(where, TS.sub(b'"ts":%.3f' % time.time(), what, count=1))
            elif outputs is not None:
                await asyncio.to_thread(_write, outputs, where, what)
        await asyncio.sleep(max(0.0, started + recording.exit_at - time.monotonic()))
        self._end(recording.exit_code)

    def _feed(self, fd: int, data: bytes) -> None:
        stream = self.stdout if fd == 1 else self.stderr
        if stream is not None:
            stream.feed_data(data)

    def _end(self, code: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = code
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.feed_eof()
        self._ended.set()


class ReplayRuntime:
    """A sandbox whose agent exec plays the recording; nothing runs."""

    name = "replay"

    def __init__(self, recording: Recording | None, outputs: Path | None):
        self.recording, self.outputs = recording, outputs
        self.processes: list[ReplayProcess] = []

    async def start(self, env: dict[str, str]) -> None:
        """Nothing to start."""

    async def spawn(self, exec_id: str, args: list[str], workdir: str, env: dict[str, str],
                    stdout: bool, stderr: bool) -> ReplayProcess:
        agent = AGENT_MODULE in args
        process = ReplayProcess(self.recording if agent else None, self.outputs, stdout, stderr)
        self.processes.append(process)
        return process

    async def kill(self, exec_id: str, process: ReplayProcess) -> None:
        process.kill()

    async def stop(self) -> None:
        for process in self.processes:
            process.kill()

    async def release(self) -> None:
        """Nothing is held."""

    def oom_kills(self) -> int:
        return 0


class _Drain:
    """The exec's stdin: taken and dropped."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def _relative(path: str) -> str:
    parts = [p for p in Path(path).parts if p not in ("/", ".", "")]
    if not parts or ".." in parts:
        raise ValueError(f"not a path under the outputs: {path!r}")
    return "/".join(parts)


def _write(outputs: Path, path: str, data: bytes) -> None:
    target = outputs / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


# -- recording ----------------------------------------------------------------------------

def record(recording: Path, outputs: Path, command: list[str]) -> int:
    """Run `command` (the agent) here, writing what it printed and left in `outputs` to `recording`."""
    started = time.monotonic()
    items: list[dict] = []
    lock = threading.Lock()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def read(pipe, fd: int) -> None:
        for line in pipe:
            with lock:
                items.append({"t": round(time.monotonic() - started, 3), "fd": fd,
                              "line": line.decode("utf-8", errors="replace")})

    readers = [threading.Thread(target=read, args=(proc.stdout, 1)), threading.Thread(target=read, args=(proc.stderr, 2))]
    for reader in readers:
        reader.start()
    code = proc.wait()
    for reader in readers:
        reader.join()
    ended = round(time.monotonic() - started, 3)
    for path in sorted(p for p in Path(outputs).rglob("*") if p.is_file() and not p.is_symlink()):
        items.append({"t": ended, "file": path.relative_to(outputs).as_posix(),
                      "data": base64.b64encode(path.read_bytes()).decode()})
    items.append({"t": ended, "exit": code})
    recording.write_text("".join(json.dumps(item) + "\n" for item in items))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m modal_emulator.replay",
                                     description="Record an agent run for the emulator's replay runtime.",
                                     usage="%(prog)s record RECORDING --outputs DIR -- COMMAND...")
    parser.add_argument("action", choices=["record"])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--outputs", type=Path, required=True, help="the folder the command writes its outputs to")
    args = parser.parse_args(ours)
    if not command:
        parser.error("give the command to record after --")
    code = record(args.recording, args.outputs, command)
    print(f"recorded {args.recording} (exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
