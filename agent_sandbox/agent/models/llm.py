"""What every tool-calling LLM model shares: the prompt, the tools, the
conversation kept within a budget, and turning tool calls into Actions.

A provider (openai.py, anthropic.py) only turns the conversation into its
API's request and the reply back into text + tool calls. The SDK client talks
through the host's relay (tunnel.py): no key or network in the sandbox.

With no instructions the offline playbook runs first (so an LLM run gives at
least what the offline one does) and the model reviews and extends its
results; with instructions the playbook's scripts are put in
/outputs/scripts/ for the model to use.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent_sandbox.agent.models import (DEFAULT_INSTRUCTIONS, FINISH, PYTHON, READ_FILE, SHELL, WRITE_FILE, Action,
                                  Observation, Task, Turn, UnknownModel)

MAX_RESPONSE_TOKENS = 8192
DEFAULT_RETRIES = 4           # the SDK's own retries (429, 5xx, timeouts, lost connections)
DEFAULT_TIMEOUT = 300.0       # seconds for one model call
KEEP_RECENT = 4               # conversation entries never compacted (the latest exchange)


class ModelError(Exception):
    """A model call failed for good; the message is one line for the user."""


class InvalidToolCall(Exception):
    """The model's answer had no usable tool call; it was told why, the step is spent."""


@dataclass
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]
    raw: str = ""                      # the arguments as the model sent them (echoed back verbatim)


@dataclass
class Entry:
    """One conversation entry, provider-neutral."""
    role: str                          # "user" | "assistant" | "tool"
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)    # assistant
    call_id: str = ""                  # tool
    error: bool = False                # tool


TOOLS: list[dict[str, Any]] = [
    {"name": SHELL, "description": "Run a shell command (/bin/sh) in /workspace. Output is cut when long.",
     "parameters": {"type": "object", "properties": {
         "command": {"type": "string"},
         "timeout": {"type": "number", "description": "seconds before it is killed (optional)"}},
         "required": ["command"]}},
    {"name": PYTHON, "description": "Run Python code (python -c) in /workspace; print what you need to see.",
     "parameters": {"type": "object", "properties": {
         "code": {"type": "string"},
         "timeout": {"type": "number", "description": "seconds before it is killed (optional)"}},
         "required": ["code"]}},
    {"name": WRITE_FILE, "description": "Write a text file under /outputs (path relative to /outputs, "
                                        "e.g. scripts/fit.py or report.md). Overwrites.",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                    "required": ["path", "content"]}},
    {"name": READ_FILE, "description": "Read part of a text file (absolute path, or relative to /workspace).",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"},
         "offset": {"type": "integer", "description": "first character to read (default 0)"},
         "max_chars": {"type": "integer", "description": "characters to read (default and most: 20000)"}},
         "required": ["path"]}},
    {"name": FINISH, "description": "End the job with a short summary for the user: what you did, what you "
                                    "found, which files to look at, and what the data could not support.",
     "parameters": {"type": "object", "properties": {
         "summary": {"type": "string"},
         "status": {"type": "string", "enum": ["succeeded", "failed"],
                    "description": "failed only if you could not do what was asked"}},
         "required": ["summary"]}},
]

SYSTEM_PROMPT = """\
You are a careful data analyst. You work alone, inside a sandbox, on a scientist's experiment data, \
using the tools. Nobody answers questions: decide, act, check.

Where things are:
- /workspace holds the input files. It is read-only.
- /outputs is where every result goes. Only /outputs comes back to the user.
- {network} Python has pandas, numpy, matplotlib, duckdb, pyarrow and openpyxl.

What to deliver in /outputs:
- cleaned data (CSV), plots (PNG) and a report, /outputs/report.md, that says what you did, what you \
found and what the data could not show;
- the scripts that produced them, in /outputs/scripts/, so the work reproduces without you: write a \
script with write_file and run it, rather than one-off code.

Ready-made scripts (already in /outputs/scripts/, each takes seconds):
- python /outputs/scripts/analyze_table.py /workspace/FILE --out /outputs --name NAME
  reads a table (CSV/TSV with any delimiter, encoding or metadata lines, Excel, JSON, Parquet), cleans \
it with an audit, profiles it and plots it into /outputs/NAME/ (NAME.csv, NAME.parquet, \
NAME.profile.json, plots/).
- python /outputs/scripts/make_report.py --out /outputs
  writes report.md and report.html from those profiles.
Running them first is the fastest way to understand and clean the data; build on their output.

Rules:
- Follow the user's instructions.
- If the data cannot support what is asked (a column, condition or measurement is missing, too few \
points, ...), say so plainly in report.md and in your finish summary. Never invent, simulate or \
guess data.
- Work in small steps and read each result. Long outputs are cut; read files in parts with read_file.
- You have at most {max_steps} tool calls. When the work is done, call finish with a short summary."""


def tool_result_text(action: Action, obs: Observation | None, limit: int) -> str:
    """The observation as the model sees it: capped to `limit` characters with a cut marker."""
    if obs is None:
        return "(no result)"
    text = obs.output or ""
    if len(text) > limit:
        head, tail = text[: limit * 2 // 3], text[-(limit // 3):]
        text = f"{head}\n[... {len(text) - len(head) - len(tail):,} characters cut ...]\n{tail}"
    if obs.truncated:
        text += "\n[the output was longer: only its beginning was captured]"
    if action.kind in (SHELL, PYTHON):
        status = "timed out and was killed" if obs.timed_out else f"exit code {obs.exit_code}"
        return f"[{status}]\n{text}"
    return text


def observation_limit(context_chars: int) -> int:
    return max(2000, min(12000, context_chars // 8))


def parse_call(call: ToolCall) -> Action:
    """The Action for one tool call; ValueError with what is wrong."""
    a = call.args
    if "__malformed__" in a:
        raise ValueError(f"the arguments were not a valid JSON object: {str(a['__malformed__'])[:200]!r}")
    need = lambda k: _text(a, k, required=True)  # noqa: E731
    if call.name == SHELL:
        return Action(SHELL, command=need("command"), timeout=_number(a, "timeout"), call_id=call.id)
    if call.name == PYTHON:
        return Action(PYTHON, code=need("code"), timeout=_number(a, "timeout"), call_id=call.id)
    if call.name == WRITE_FILE:
        path = need("path")
        path = path[len("/outputs/"):] if path.startswith("/outputs/") else path
        return Action(WRITE_FILE, path=path, content=_text(a, "content", required=True, empty_ok=True),
                      call_id=call.id)
    if call.name == READ_FILE:
        return Action(READ_FILE, path=need("path"), offset=int(_number(a, "offset")),
                      limit=int(_number(a, "max_chars")), call_id=call.id)
    if call.name == FINISH:
        status = a.get("status") if a.get("status") in ("succeeded", "failed") else "succeeded"
        return Action(FINISH, message=_text(a, "summary", required=True), status=status, call_id=call.id)
    raise ValueError(f"unknown tool {call.name!r}; the tools are {', '.join(t['name'] for t in TOOLS)}")


def _text(args: dict, key: str, required: bool = False, empty_ok: bool = False) -> str:
    value = args.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (not value.strip() and not empty_ok):
        raise ValueError(f"argument {key!r} must be a non-empty string")
    return value


def _number(args: dict, key: str) -> float:
    value = args.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"argument {key!r} must be a positive number")
    return float(value)


def compact(entries: list[Entry], budget: int) -> None:
    """Shrink older tool outputs and written file contents until the conversation fits `budget`."""
    def size() -> int:
        return sum(len(e.text) + sum(len(c.raw) or len(json.dumps(c.args)) for c in e.calls) for e in entries)
    total = size()
    for entry in entries[1:-KEEP_RECENT]:   # the first entry is the task itself
        if total <= budget:
            return
        if entry.role == "tool" and len(entry.text) > 300 and not entry.text.startswith("[compacted"):
            before = len(entry.text)
            first = " ".join(entry.text[:160].split())
            entry.text = f"[compacted to save context: {before:,} characters; it began: {first}]"
            total -= before - len(entry.text)
        for call in entry.calls:
            content = call.args.get("content")
            if call.name == WRITE_FILE and isinstance(content, str) and len(content) > 300:
                call.args = dict(call.args, content=f"[compacted: {len(content):,} characters written]")
                call.raw = json.dumps(call.args)
                total = size()


def describe_api_error(sdk: Any, exc: Exception, model: str) -> str:
    """One line for a model call that failed for good (after the SDK's retries)."""
    message = _api_message(exc)
    if getattr(exc, "response", None) is not None and exc.response.headers.get("x-agent-sandbox-budget"):
        return message   # the host's token budget: its own clear reason
    if isinstance(exc, sdk.AuthenticationError):
        return f"the model endpoint refused the key (401): {message}"
    if isinstance(exc, sdk.PermissionDeniedError):
        return f"the model endpoint refused access (403): {message}"
    if isinstance(exc, sdk.NotFoundError):
        return f"unknown model {model!r} at the endpoint (404): {message}"
    if isinstance(exc, sdk.RateLimitError):
        return f"the model endpoint kept rate limiting (429) after retries: {message}"
    if isinstance(exc, sdk.APITimeoutError):
        return "the model endpoint did not answer in time (after retries)"
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        return f"could not reach the model endpoint (after retries): {cause or message}"
    if isinstance(exc, sdk.APIStatusError):
        return f"the model endpoint answered {exc.status_code}: {message}"
    return f"model error: {type(exc).__name__}: {message}"


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return " ".join(str(error["message"]).split())[:300]
    return " ".join(str(getattr(exc, "message", "") or exc).split())[:300]


class LLMModel:
    """The tool-calling agent's side of the loop; providers fill in `call`."""

    provider = ""
    needs_relay = True

    def __init__(self, name: str = ""):
        if not name:
            raise UnknownModel(f"name the model: {self.provider}:<model>")
        self.name = name
        self.entries: list[Entry] = []
        self.pending: deque[Action] = deque()
        self.synced = 0                  # history turns already in the conversation
        self.context_chars = 200_000
        self.warnings: list[str] = []
        self.preamble: Any = None        # the offline playbook, before the first model call
        self.preamble_summary = ""
        self.retries = int(os.environ.get("AGENT_SANDBOX_MODEL_RETRIES") or DEFAULT_RETRIES)
        self.timeout = float(os.environ.get("AGENT_SANDBOX_MODEL_TIMEOUT") or DEFAULT_TIMEOUT)

    # -- set-up by the agent -------------------------------------------------
    def connect(self, channel: Any, context_chars: int) -> None:
        self.context_chars = context_chars
        self.client = self.make_client(channel)

    def make_client(self, channel: Any) -> Any:
        raise NotImplementedError

    def setup_files(self, task: Task) -> list[tuple[str, str]]:
        """Files the agent writes into /outputs before the first step."""
        from agent_sandbox.agent.playbook import SCRIPT_NAMES, script_source
        if task.instructions.strip() == DEFAULT_INSTRUCTIONS and not task.previous:
            from agent_sandbox.agent.models.offline import OfflinePlaybook
            self.preamble = OfflinePlaybook()   # it writes the scripts itself, as logged steps
            return []
        return [(f"scripts/{name}", script_source(name)) for name in SCRIPT_NAMES]

    def take_warnings(self) -> list[str]:
        warnings, self.warnings = self.warnings, []
        return warnings

    # -- the loop's entry point ---------------------------------------------
    def next_action(self, task: Task, history: list[Turn]) -> Action:
        if self.preamble is not None:
            action = self.preamble.next_action(task, history)
            if action.kind != FINISH:
                return action
            self.preamble, self.synced = None, len(history)
            self.preamble_summary = action.message
        limit = observation_limit(self.context_chars)
        for turn in history[self.synced:]:
            if turn.action.call_id:
                self.entries.append(Entry("tool", tool_result_text(turn.action, turn.observation, limit),
                                          call_id=turn.action.call_id,
                                          error=bool(turn.observation and turn.observation.exit_code)))
        self.synced = len(history)
        if self.pending:
            return self.pending.popleft()
        if not self.entries:
            self.entries.append(Entry("user", self.first_message(task)))
        compact(self.entries, self.context_chars)
        text, calls = self.call(SYSTEM_PROMPT.format(max_steps=task.max_steps, network=(
            "Outbound network is on (pip install works)." if task.network else
            "There is no network (no downloads, no pip install).")), self.entries)
        self.entries.append(Entry("assistant", text or "", calls=calls))
        actions = []
        for call in calls:
            try:
                actions.append(parse_call(call))
            except ValueError as exc:
                self.entries.append(Entry("tool", f"error: {exc}. Nothing was run; call the tool again.",
                                          call_id=call.id, error=True))
                self.warnings.append(f"the model's call of {call.name!r} was malformed: {exc}")
        if not calls:
            self.entries.append(Entry("user", "You answered without calling a tool. Use the tools to do the "
                                              "work; when it is done, call finish with your summary."))
            raise InvalidToolCall("the model answered without calling a tool; it was asked to use one")
        if not actions:
            raise InvalidToolCall("no usable tool call; the model was told what was wrong")
        if text:
            actions[0].thought = text.strip()
        self.pending.extend(actions[1:])
        return actions[0]

    def first_message(self, task: Task) -> str:
        from agent_sandbox.agent.models.offline import human_size
        given = task.instructions.strip() != DEFAULT_INSTRUCTIONS
        listed = "\n".join(f"- /workspace/{f['path']} ({human_size(f.get('size', 0))})" for f in task.files[:200])
        more = f"\n- ... and {len(task.files) - 200} more" if len(task.files) > 200 else ""
        parts = [f"The user's instructions:\n{task.instructions}" if given else
                 "The user gave no instructions: profile and clean every dataset and write cleaned tables, "
                 "plots and a report."]
        parts.append(f"Input files ({len(task.files)}):\n{listed or '(none)'}{more}")
        if task.previous:
            parts.append("This job continues an earlier one. Its results are in /workspace/previous/ "
                         f"(read-only; copy what you change into /outputs). What it did:\n{task.previous}")
        if self.preamble_summary:
            parts.append("The standard analysis has already run (analyze_table.py on every file, then "
                         f"make_report.py): {self.preamble_summary}\nRead /outputs/report.md and the "
                         "profiles, check the results for problems, and add what a scientist would want to "
                         "know about this data (keep report.md up to date).")
        return "\n\n".join(parts)

    def call(self, system: str, entries: list[Entry]) -> tuple[str, list[ToolCall]]:
        """One model call: (text, tool calls). Raises ModelError when it fails for good."""
        raise NotImplementedError
