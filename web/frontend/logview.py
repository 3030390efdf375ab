"""A job's stored events as a readable log on the server (the page without JavaScript).

The live page (static/job.js) renders the same way as events arrive: steps
that can be folded, routine steps (writing files) folded into one line, long
outputs folded, `RESULT {json}` lines as a readable summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from agent_sandbox.events import ACTIVE, Status

FOLD_LINES = 12      # outputs longer than this are folded
SHOW_LINES = 400     # the server page shows at most this many lines of one output


def result_summary(payload: dict[str, Any]) -> str:
    """One readable line for a `RESULT {...}` line (the playbook's per-file and report results)."""
    if "file" in payload:
        name, status = payload.get("file"), payload.get("status", "")
        if status == "ok":
            tables = ", ".join(payload.get("tables") or []) or "no table"
            took = f" in {payload['seconds']:.1f} s" if isinstance(payload.get("seconds"), (int, float)) else ""
            return f"✓ {name} → {tables}{took}"
        mark = "↷" if status == "skipped" else "✗"
        return f"{mark} {name} {status or 'failed'}: {payload.get('reason') or 'no reason given'}"
    if "analysed" in payload:
        return (f"✓ report: {payload.get('files', '?')} file(s), {payload.get('analysed', 0)} analysed, "
                f"{payload.get('skipped', 0)} skipped, {payload.get('failed', 0)} failed")
    return "result: " + ", ".join(f"{k} {v}" for k, v in payload.items() if not isinstance(v, (list, dict)))


def _output_lines(text: str) -> Iterable[tuple[str, str]]:
    """(kind, text) per line: RESULT lines become ("result", summary)."""
    for line in text.splitlines():
        if line.startswith("RESULT {"):
            try:
                payload = json.loads(line[len("RESULT "):])
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                yield "result", result_summary(payload)
                continue
        yield "text", line


STEP_NOTES = ("message", "warning", "error", "file_written", "usage")


def build_log(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks: {"kind": "step", step, text, commands, notes} | {"kind": "routine", steps, title} | {"kind": "note", cls, text}."""
    blocks: list[dict[str, Any]] = []
    step: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    for event in events:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "step":
            step = {"kind": "step", "step": event.get("step"), "text": data.get("text", ""),
                    "commands": [], "notes": []}
            blocks.append(step)
            command = None
        elif kind == "command_started":
            if step is None:
                step = {"kind": "step", "step": event.get("step"), "text": "", "commands": [], "notes": []}
                blocks.append(step)
            command = {"kind": data.get("kind", "shell"), "line": data.get("command") or data.get("path") or "",
                       "lines": [], "exit": None}
            step["commands"].append(command)
        elif kind == "output" and command is not None:
            stream = data.get("stream", "stdout")
            command["lines"] += [(stream if k == "text" else k, t) for k, t in _output_lines(data.get("text", ""))]
        elif kind == "command_finished" and command is not None:
            command.update(exit=data.get("exit_code"), duration=data.get("duration"),
                           timed_out=data.get("timed_out"))
            command = None
        elif (note := _note(kind, data)) is not None:
            cls, text = note
            if step is not None and kind in STEP_NOTES:
                step["notes"].append({"cls": cls, "text": text})
            else:
                blocks.append({"kind": "note", "cls": cls, "text": text})
                if kind in ("run_finished", "status", "result"):
                    step = None
    return _fold_routine(_trim(blocks))


def _note(kind: str, data: dict[str, Any]) -> tuple[str, str] | None:
    if kind == "usage":   # one model call, as the host's relay counted it
        budget = f" of {data['max_tokens']:,}" if data.get("max_tokens") else ""
        return "usage", (f"tokens: {data.get('input_tokens', 0):,} in, {data.get('output_tokens', 0):,} out"
                         f" · job {data.get('job_tokens', 0):,}{budget}")
    if kind == "message":
        return "msg", data.get("text", "")
    if kind == "warning":
        return "warning", "warning: " + data.get("message", "")
    if kind == "error":
        return "error", "error: " + data.get("message", "")
    if kind == "file_written":
        return "file", f"wrote {data.get('path')} ({data.get('size')} bytes)"
    if kind == "status":
        return "status", f"— {data.get('status')}" + (f": {data['message']}" if data.get("message") else "")
    if kind == "run_started":
        return "status", f"run started: model {data.get('model', '?')} in the {data.get('environment', '?')} environment"
    if kind == "run_finished":
        return "status", f"run finished: {data.get('status')}" + (f" ({data['reason']})" if data.get("reason") else "")
    if kind == "result":
        return "status", f"outputs collected: {data.get('files', 0)} files, {data.get('skipped', 0)} not brought back"
    if kind == "raw":
        return "raw", data.get("text", "")
    return None


def _trim(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for block in blocks:
        for command in block.get("commands", []):
            lines = command["lines"]
            command["hidden_lines"] = max(0, len(lines) - SHOW_LINES)
            command["lines"] = lines[-SHOW_LINES:]
            command["folded"] = len(lines) > FOLD_LINES
            command["total_lines"] = len(lines)
    return blocks


def is_routine(block: dict[str, Any]) -> bool:
    """A step that only wrote files (the playbook writing its scripts): one line, folded."""
    commands = block.get("commands") or []
    return (block["kind"] == "step" and bool(commands) and all(c["kind"] == "write_file" for c in commands)
            and all(c["exit"] in (0, None) for c in commands))


def _fold_routine(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in blocks:
        if is_routine(block):
            if out and out[-1]["kind"] == "routine":
                out[-1]["steps"].append(block)
            else:
                out.append({"kind": "routine", "steps": [block]})
        else:
            out.append(block)
    for block in out:
        if block["kind"] == "routine":
            steps = block["steps"]
            paths = [c["line"].removeprefix("write ") for s in steps for c in s["commands"]]
            first, last = steps[0]["step"], steps[-1]["step"]
            block["plan"] = steps[0]["text"]
            block["title"] = (f"Step{'s' if len(steps) > 1 else ''} {first}{'–' + str(last) if len(steps) > 1 else ''}"
                              f" · wrote {len(paths)} file{'s' if len(paths) != 1 else ''}: {', '.join(paths)}")
    return out


def clock(ts: float | None) -> str:
    """A timestamp readable without JavaScript (UTC, stated)."""
    if not ts:
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """1 h 02 min, 3 min 05 s, 42 s."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else ""


PHASES = (Status.QUEUED, Status.STARTING, Status.RUNNING, Status.COLLECTING, "done")
# The last phase of a finished job says how it ended.
OUTCOMES = {Status.SUCCEEDED: "Done", Status.FAILED: "Failed", Status.CANCELLED: "Cancelled",
            Status.TIMEOUT: "Ran out of time", Status.COMMAND_TIMEOUT: "A command ran out of time",
            Status.IDLE_TIMEOUT: "Stopped: no output", Status.ERROR: "Sandbox failed",
            Status.INTERRUPTED: "Interrupted"}


def phase(events: Iterable[dict[str, Any]], status: str, partial: bool = False) -> str:
    """Where the job is: queued → starting → running → collecting → done (`partial`: the events
    are the last ones of a long run, which started long ago)."""
    if status not in ACTIVE:
        return "done"
    current = Status.QUEUED if status == Status.QUEUED else Status.RUNNING if partial else Status.STARTING
    for event in events:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "run_started":
            current = Status.RUNNING
        elif kind == "status" and data.get("status") in (Status.STARTING, Status.COLLECTING):
            current = Status(data["status"])
    return current


def reached(events: Iterable[dict[str, Any]], status: str, partial: bool = False) -> set[str]:
    """The phases a job went through (a cancelled or failed job skipped some): a finished job's
    page marks only these as passed."""
    if status == Status.SUCCEEDED:
        return set(PHASES)
    seen = {Status.QUEUED} | ({Status.STARTING, Status.RUNNING} if partial else set())
    for event in events:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "run_started":
            seen |= {Status.STARTING, Status.RUNNING}
        elif kind == "status" and data.get("status") in (Status.STARTING, Status.COLLECTING):
            seen.add(Status(data["status"]))
    return seen | ({"done"} if status not in ACTIVE else set())


def file_states(events: Iterable[dict[str, Any]], names: list[str], status: str) -> dict[str, tuple[str, str]]:
    """Input file -> (state, words) as the live page shows it: analysing, done, skipped, failed;
    a file still being analysed when the job ended badly was stopped."""
    states: dict[str, tuple[str, str]] = {}
    for event in events:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "command_started":
            line = data.get("command") or ""
            for name in names:
                if "/workspace/" + name in line and name not in states:
                    states[name] = ("working", "analysing")
        elif kind == "output":
            for line in (data.get("text") or "").splitlines():
                payload = _result(line)
                if payload and payload.get("file") in names:
                    st = payload.get("status")
                    states[payload["file"]] = (("done", "done") if st == "ok" else
                                               ("skipped", "skipped") if st == "skipped" else ("failed", st or "failed"))
    if status == Status.SUCCEEDED:  # nothing said how its analysis ended: no claim either way
        states = {n: s for n, s in states.items() if s[0] != "working"}
    elif status not in ACTIVE:
        states = {n: (("stopped", "stopped") if s[0] == "working" else s) for n, s in states.items()}
    return states


def _result(line: str) -> dict[str, Any] | None:
    if not line.startswith("RESULT {"):
        return None
    try:
        payload = json.loads(line[len("RESULT "):])
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
