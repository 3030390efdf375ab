"""The event protocol: one versioned JSON object per line on the agent's stdout.

The agent writes events with `EventWriter`; the host turns each stdout line back
into an event with `parse_line`. A line that is not one of our events is kept
as a `raw` event, never dropped, so nothing the sandbox prints is lost.

    {"v":1,"seq":12,"ts":1764160000.12,"type":"command_started","step":3,"data":{...}}
"""

from __future__ import annotations

import json
import sys
import threading
import time
from enum import StrEnum
from typing import IO, Any

PROTOCOL_VERSION = 1

# Event types. The agent emits the first group; the host adds the second.
RUN_STARTED = "run_started"          # data: environment, model, limits, workspace, outputs
STEP = "step"                        # data: thought/plan text for this step
COMMAND_STARTED = "command_started"  # data: kind (shell|python|write_file), command, timeout
OUTPUT = "output"                    # data: stream (stdout|stderr), text, truncated
COMMAND_FINISHED = "command_finished"  # data: exit_code, duration, timed_out, truncated
FILE_WRITTEN = "file_written"        # data: path, size
MESSAGE = "message"                  # data: text (a summary or note for the user)
WARNING = "warning"                  # data: message
ERROR = "error"                      # data: message
RUN_FINISHED = "run_finished"        # data: status, reason, steps, output_files

RAW = "raw"                          # host: a stdout/stderr line that is not an event; data: stream, text
STATUS = "status"                    # host: job lifecycle; data: status, message
RESULT = "result"                    # host: outputs collected; data: status, reason, files, skipped, usage
USAGE = "usage"                      # host: one model call relayed; data: input/output/total tokens, job total, budget

# The relay channel (agent_sandbox.relay.host): the agent asks the host to make a
# model call for it. The host answers on the agent's stdin; these lines are
# never stored or shown.
MODEL_REQUEST = "model_request"      # data: id, method, path, headers, body, timeout

AGENT_TYPES = frozenset({RUN_STARTED, STEP, COMMAND_STARTED, OUTPUT, COMMAND_FINISHED,
                         FILE_WRITTEN, MESSAGE, WARNING, ERROR, RUN_FINISHED})
HOST_TYPES = frozenset({RAW, STATUS, RESULT, USAGE})
ALL_TYPES = AGENT_TYPES | HOST_TYPES

class Status(StrEnum):
    """Every status a run or a job can have: the one list."""

    QUEUED = "queued"                    # web: waiting for a free sandbox
    RUNNING = "running"                  # web: a worker runs it
    STARTING = "starting"                # host: the sandbox is being started
    COLLECTING = "collecting"            # host: the outputs are being brought back
    SUCCEEDED = "succeeded"
    FAILED = "failed"                    # the agent reported failure or exited non-zero
    TIMEOUT = "timeout"                  # whole-run time limit
    COMMAND_TIMEOUT = "command_timeout"  # one command ran past its limit
    IDLE_TIMEOUT = "idle_timeout"        # no output for too long
    CANCELLED = "cancelled"
    ERROR = "error"                      # infrastructure failure (sandbox could not start, ...)
    INTERRUPTED = "interrupted"          # web: the server stopped or restarted while the job ran


# A job holds a slot while active; a run (any backend) ends with one of RUN_END;
# a job ends with one of FINAL (a run's end, or interrupted by the server).
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
RUN_END = frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMEOUT, Status.COMMAND_TIMEOUT,
                     Status.IDLE_TIMEOUT, Status.CANCELLED, Status.ERROR})
FINAL = RUN_END | {Status.INTERRUPTED}

# Short names, as the agent and the backends use them.
SUCCEEDED, FAILED, TIMEOUT = Status.SUCCEEDED, Status.FAILED, Status.TIMEOUT
COMMAND_TIMEOUT, IDLE_TIMEOUT, CANCELLED = Status.COMMAND_TIMEOUT, Status.IDLE_TIMEOUT, Status.CANCELLED
ERROR_STATUS = Status.ERROR


def make_event(type: str, data: dict[str, Any] | None = None, *, seq: int = 0,
               step: int | None = None, ts: float | None = None) -> dict[str, Any]:
    event = {"v": PROTOCOL_VERSION, "seq": seq, "ts": time.time() if ts is None else ts,
             "type": type, "data": data or {}}
    if step is not None:
        event["step"] = step
    return event


def encode(event: dict[str, Any]) -> str:
    """One line of JSON; non-ASCII kept readable, never a raw newline inside."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_line(line: str | bytes, stream: str = "stdout") -> dict[str, Any]:
    """Turn one line from the sandbox into an event; anything else becomes `raw`."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):   # a line nested past Python's recursion limit stays text
            obj = None
        if (isinstance(obj, dict) and obj.get("v") == PROTOCOL_VERSION and isinstance(obj.get("type"), str)
                and isinstance(obj.get("data", {}), dict) and shallow(obj["data"], MAX_DEPTH)):
            obj.setdefault("data", {})
            return obj
    return make_event(RAW, {"stream": stream, "text": text})


MAX_DEPTH = 32   # nesting an event's data may have; deeper, the line is kept as text (it is stored and re-encoded)


def shallow(value: Any, depth: int) -> bool:
    """`value` nests at most `depth` levels of lists and dicts (checked without recursion)."""
    todo = [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if level >= depth:
                return False
            todo.extend((child, level + 1) for child in item if isinstance(child, (dict, list)))
    return True


class EventWriter:
    """Writes events as JSON lines, flushed per line, numbered from 1.

    Thread-safe: the agent's output readers and its main loop share one writer.
    An optional `mirror` file (Docker: /outputs/agent.log) gets the same lines.
    """

    def __init__(self, stream: IO[str] | None = None, mirror: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.mirror = mirror
        self.seq = 0
        self._lock = threading.Lock()

    def emit(self, type: str, data: dict[str, Any] | None = None,
             step: int | None = None, mirror: bool = True) -> dict[str, Any]:
        """Write one event; `mirror=False` keeps it out of the mirror file (the relay's frames)."""
        with self._lock:
            self.seq += 1
            event = make_event(type, data, seq=self.seq, step=step)
            line = encode(event) + "\n"
            self.stream.write(line)
            self.stream.flush()
            if self.mirror is not None and mirror:
                self.mirror.write(line)
                self.mirror.flush()
        return event


def render(event: dict[str, Any]) -> str:
    """A readable one-or-more-line rendering for the CLI (the web page has its own)."""
    t, d = event.get("type"), event.get("data", {})
    step = event.get("step")
    prefix = f"[{step}] " if step is not None else ""
    if t == RUN_STARTED:
        return (f"== run started: model {d.get('model')} in {d.get('environment')} "
                f"environment")
    if t == STEP:
        return f"{prefix}{d.get('text', '')}"
    if t == COMMAND_STARTED:
        return f"{prefix}$ {d.get('command', '')}"
    if t == OUTPUT:
        text = d.get("text", "").rstrip("\n")
        return text + ("\n  ... (output truncated)" if d.get("truncated") else "")
    if t == COMMAND_FINISHED:
        extra = " (timed out)" if d.get("timed_out") else ""
        return f"{prefix}-> exit {d.get('exit_code')} in {d.get('duration', 0):.2f}s{extra}"
    if t == FILE_WRITTEN:
        return f"{prefix}wrote {d.get('path')} ({d.get('size')} bytes)"
    if t == MESSAGE:
        return d.get("text", "")
    if t == WARNING:
        return f"warning: {d.get('message', '')}"
    if t == ERROR:
        return f"error: {d.get('message', '')}"
    if t == RUN_FINISHED:
        return f"== run finished: {d.get('status')}" + (f" ({d['reason']})" if d.get("reason") else "")
    if t == RAW:
        return d.get("text", "")
    if t == STATUS:
        return f"-- {d.get('status')}: {d.get('message', '')}".rstrip(": ")
    if t == RESULT:
        tokens = (d.get("usage") or {}).get("total_tokens")
        return (f"== result: {d.get('status')}, {d.get('files', 0)} files collected, "
                f"{d.get('skipped', 0)} skipped" + (f", {tokens:,} model tokens" if tokens else ""))
    if t == USAGE:
        budget = f" of {d['max_tokens']:,}" if d.get("max_tokens") else ""
        return (f"{prefix}   tokens: {d.get('input_tokens', 0):,} in, {d.get('output_tokens', 0):,} out "
                f"(job: {d.get('job_tokens', 0):,}{budget})")
    return encode(event)
