"""What every tool-calling LLM model shares: the prompt, the tools, the
conversation kept within a budget, and turning tool calls into Actions.

A provider (openai.py, anthropic.py) only turns the conversation into its
API's request and the reply back into a `Reply` (text, tool calls, and why it
stopped). The SDK client talks through the host's relay (agent_sandbox.relay):
no key or network in the sandbox.

Every kind of reply is handled: tool calls run; a reply without one gets a
reminder; a refusal is shown and answered (the run ends after MAX_REFUSALS in a
row); a reply cut by the output-token limit is answered with a request to
continue in smaller pieces; a context-window error compacts the conversation
harder and retries once. The model sees its remaining steps, is warned near
the end, and its last step can only be `finish`, so a run at the step limit
still ends with a summary. Steps the agent takes on its own (the playbook that
runs first without instructions) are not counted against the model.

With no instructions the offline playbook runs first (so an LLM run gives at
least what the offline one does) and the model reviews and extends its
results; with instructions the playbook's scripts are put in
/outputs/scripts/ for the model to use.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent_sandbox.agent.models import (
    DEFAULT_INSTRUCTIONS,
    FINISH,
    PYTHON,
    READ_FILE,
    SHELL,
    WRITE_FILE,
    Action,
    Observation,
    Task,
    Turn,
    UnknownModel,
)

MAX_RESPONSE_TOKENS = 8192    # the output cap each call asks for (the host's relay may lower it)
DEFAULT_RETRIES = 4           # the SDK's own retries (429, 5xx, timeouts, lost connections)
DEFAULT_TIMEOUT = 300.0       # seconds for one model call, its retries included
KEEP_RECENT = 4               # conversation entries compacted only when the rest is not enough
STUB_CHARS = 300              # an entry this long or shorter is never compacted
MAX_REFUSALS = 3              # refusals in a row that end the run
WARN_STEPS = 3                # from this many steps left (this one included) the model is told to wrap up
MAX_THOUGHT_CHARS = 20000     # of a reply's text shown in the log
PREAMBLE_STEPS = 100          # steps the playbook run before the model may take (it batches files past that)


class ModelError(Exception):
    """A model call failed for good; the message is one line for the user."""


class ContextOverflow(ModelError):
    """The request was larger than the model's context window."""


class InvalidToolCall(Exception):
    """The model's answer had no usable tool call; it was told why, the step is spent."""


LENGTH, REFUSAL = "length", "refusal"   # Reply.stop: cut by the output cap; refused


@dataclass
class Reply:
    """One model answer, provider-neutral."""
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    stop: str = ""                     # "" (done or tool calls) | LENGTH | REFUSAL
    refusal: str = ""                  # the provider's refusal message, if it gave one


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
- {network} Python has {packages}.

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
- Work in small steps and read each result. A long output shows its beginning and its end; the whole \
output is in the file the result names: grep, tail or sed it. Read long files in parts with read_file.
- Keep each answer short: write long code or text to a file in parts rather than in one call.
- You have at most {max_steps} tool calls; each result says how many are left. When the work is done, \
call finish with a short summary."""
PACKAGES = ("pandas", "numpy", "scipy", "statsmodels", "matplotlib", "duckdb", "pyarrow", "openpyxl")


def installed_packages() -> str:
    """The analysis packages this sandbox's Python has, as the prompt says them."""
    found = [name for name in PACKAGES if importlib.util.find_spec(name) is not None]
    return ", ".join(found[:-1]) + f" and {found[-1]}" if len(found) > 1 else (found[0] if found else "no extra packages")


def tool_result_text(action: Action, obs: Observation | None, limit: int) -> str:
    """The observation as the model sees it: at most `limit` characters, its head and (the larger
    part) its end, with what was elided and where the whole output is."""
    if obs is None:
        return "(no result)"
    if action.kind == READ_FILE and obs.exit_code == 0 and len(obs.output) > limit:   # read on where it stops
        return obs.output[:limit] + f"\n[more follows: read again with offset={action.offset + limit}]"
    text = shorten(obs.output or "", limit, head_share=1 / 3)
    if (obs.truncated or len(obs.output or "") > limit) and obs.full_output:
        text += (f"\n[the whole output ({obs.total_chars or len(obs.output):,} characters) is in "
                 f"{obs.full_output}: read it with tail, grep or sed]")
    if action.kind in (SHELL, PYTHON):
        status = "timed out and was killed" if obs.timed_out else f"exit code {obs.exit_code}"
        return f"[{status}]\n{text}"
    return text


def shorten(text: str, limit: int, head_share: float = 0.5) -> str:
    """`text` cut to about `limit` characters in the middle, saying how much was cut."""
    if len(text) <= limit:
        return text
    head = int(limit * head_share)
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - head - tail:,} characters cut ...]\n{text[len(text) - tail:]}"


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


def entry_size(entry: Entry) -> int:
    return len(entry.text) + sum(len(c.raw) or len(json.dumps(c.args)) for c in entry.calls)


def stub(text: str, what: str) -> str:
    """What is left of a compacted text: its size, its first and its last words."""
    first, last = " ".join(text[:120].split()), " ".join(text[-120:].split())
    return f"[{what} compacted to save context: {len(text):,} characters; it began: {first} ... it ended: {last}]"


def squeeze(entry: Entry, keep: int) -> int:
    """Shorten the entry's text and its calls' string arguments to `keep` characters each
    (keep=0: a stub); the characters saved."""
    before = entry_size(entry)
    if len(entry.text) > max(keep, STUB_CHARS) and not entry.text.startswith("[compacted"):
        what = "output" if entry.role == "tool" else "reply"
        entry.text = shorten(entry.text, keep, 1 / 3) if keep else stub(entry.text, what)
    for call in entry.calls:
        long = {k: v for k, v in call.args.items() if isinstance(v, str) and len(v) > max(keep, STUB_CHARS)}
        if long:
            call.args = {**call.args, **{k: shorten(v, keep) if keep else stub(v, k) for k, v in long.items()}}
            call.raw = json.dumps(call.args)
    return before - entry_size(entry)


def compact(entries: list[Entry], budget: int, hard: bool = False) -> None:
    """Shrink the conversation until it fits `budget` characters: first old tool outputs and
    old replies (their text and their calls' arguments, e.g. a written file's content),
    then (or at once when `hard`) the recent ones too. The latest tool results (the error
    the model must fix) are never compacted; the task (the first entry) only when `hard`."""
    total = sum(entry_size(e) for e in entries)
    latest = latest_results(entries)
    older = entries[1:-KEEP_RECENT] if not hard else []
    recent = [e for e in entries[1:] if e not in older and id(e) not in latest]
    for entry in older + recent:
        if total <= budget:
            return
        total -= squeeze(entry, 0)
    if hard and total > budget and entries:   # the task itself, as a last resort: its head and its end
        squeeze(entries[0], max(STUB_CHARS + 1, budget // 2))


def latest_results(entries: list[Entry]) -> set[int]:
    """ids of the tool results (and notes) after the last assistant entry."""
    found: set[int] = set()
    for entry in reversed(entries):
        if entry.role == "assistant":
            break
        found.add(id(entry))
    return found


OVERFLOW = re.compile(r"context.{0,20}(length|window)|maximum context|too many tokens|prompt is too long"
                      r"|request.{0,10}too large|input is too long", re.IGNORECASE)


def model_error(sdk: Any, exc: Exception, model: str, timeout: float) -> ModelError:
    """The ModelError (one line) for a model call that failed for good (after the SDK's retries)."""
    message = _api_message(exc)
    status = getattr(exc, "status_code", None)
    if getattr(exc, "response", None) is not None and exc.response.headers.get("x-agent-sandbox-budget"):
        return ModelError(message)   # the host's token budget: its own clear reason
    if status == 413 or (status == 400 and (getattr(exc, "code", None) == "context_length_exceeded"
                                            or OVERFLOW.search(message))):
        return ContextOverflow(f"the conversation is larger than the model's context window ({status}): {message}")
    if status == 408 or isinstance(exc, sdk.APITimeoutError):
        return ModelError(f"the model call took longer than AGENT_SANDBOX_MODEL_TIMEOUT ({timeout:g}s)")
    if isinstance(exc, sdk.AuthenticationError):
        return ModelError(f"the model endpoint refused the key (401): {message}")
    if isinstance(exc, sdk.PermissionDeniedError):
        return ModelError(f"the model endpoint refused access (403): {message}")
    if isinstance(exc, sdk.NotFoundError):
        return ModelError(f"unknown model {model!r} at the endpoint (404): {message}")
    if isinstance(exc, sdk.RateLimitError):
        return ModelError(f"the model endpoint kept rate limiting (429) after retries: {message}")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        return ModelError(f"could not reach the model endpoint (after retries): {cause or message}")
    if isinstance(exc, sdk.APIStatusError):
        return ModelError(f"the model endpoint answered {exc.status_code}: {message}")
    return ModelError(f"model error: {type(exc).__name__}: {message}")


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
        self.retries = DEFAULT_RETRIES
        self.timeout = DEFAULT_TIMEOUT
        self.channel: Any = None
        self.warnings: list[str] = []
        self.preamble: Any = None        # the offline playbook, before the first model call
        self.preamble_summary = ""
        self.refusals = 0                # refusals in a row

    # -- set-up by the agent -------------------------------------------------
    def connect(self, channel: Any, context_chars: int, retries: int = DEFAULT_RETRIES,
                timeout: float = DEFAULT_TIMEOUT) -> None:
        self.context_chars, self.retries, self.timeout = context_chars, retries, timeout
        self.channel = channel
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
        if self.preamble is not None:   # its own step budget: its steps are not the model's
            action = self.preamble.next_action(replace(task, max_steps=PREAMBLE_STEPS), history)
            if action.kind != FINISH:
                action.free = True   # the agent's own step, not the model's
                return action
            self.preamble, self.synced = None, len(history)
            self.preamble_summary = action.message
        self.sync(history)
        if self.pending:
            return self.pending.popleft()
        if not self.entries:
            self.entries.append(Entry("user", self.first_message(task)))
        elif task.steps_left and self.entries[-1].role != "assistant":
            self.entries[-1].text += "\n" + steps_note(task.steps_left)
        last = 0 < task.steps_left <= 1
        reply = self.ask(task, force_finish=last)
        try:
            actions = self.understand(reply)
        except InvalidToolCall:
            if not last:
                raise
            actions = []
        if last and (not actions or actions[0].kind != FINISH):
            return out_of_steps(task, reply)
        if len(actions) > 1 and task.steps_left:
            actions = self.within_steps(actions, task.steps_left)
        if reply.text:
            actions[0].thought = shorten(reply.text.strip(), MAX_THOUGHT_CHARS)
        self.pending.extend(actions[1:])
        return actions[0]

    def sync(self, history: list[Turn]) -> None:
        """The results of the turns the conversation has not seen yet."""
        limit = observation_limit(self.context_chars)
        for turn in history[self.synced:]:
            if turn.action.call_id:
                self.entries.append(Entry("tool", tool_result_text(turn.action, turn.observation, limit),
                                          call_id=turn.action.call_id,
                                          error=bool(turn.observation and turn.observation.exit_code)))
        self.synced = len(history)

    def ask(self, task: Task, force_finish: bool) -> Reply:
        """One model call within the context budget; on a context-window error, once more after a
        harder compaction (and the budget stays lowered for the rest of the run)."""
        compact(self.entries, self.context_chars)
        system = self.system_prompt(task)
        for attempt in (1, 2):
            if self.channel is not None:
                self.channel.deadline = time.monotonic() + self.timeout
            try:
                return self.call(system, self.entries, force_finish)
            except ContextOverflow as exc:
                if attempt == 2:
                    raise ModelError(f"{exc}; even after compacting the conversation: lower "
                                     "AGENT_SANDBOX_MAX_CONTEXT_CHARS for this model") from None
                self.context_chars = max(4000, sum(entry_size(e) for e in self.entries) // 2)
                compact(self.entries, self.context_chars, hard=True)
                self.warnings.append(f"{exc}; the conversation was compacted to {self.context_chars:,} characters "
                                     "and the call retried")
            finally:
                if self.channel is not None:
                    self.channel.deadline = None
        raise AssertionError("unreachable")

    def system_prompt(self, task: Task) -> str:
        network = ("Outbound network is on (pip install works)." if task.network else
                   "There is no network (no downloads, no pip install).")
        return SYSTEM_PROMPT.format(max_steps=task.max_steps, network=network, packages=installed_packages())

    def understand(self, reply: Reply) -> list[Action]:
        """The actions of a reply; InvalidToolCall (the model told, the step spent) or ModelError when
        there is none. The conversation never gets an empty assistant entry."""
        limit = observation_limit(self.context_chars)
        if reply.stop == REFUSAL:
            return self.refused(reply)
        self.refusals = 0
        entry = Entry("assistant", reply.text, calls=reply.calls)
        self.entries.append(entry)
        actions = []
        for call in reply.calls:
            try:
                actions.append(parse_call(call))
            except ValueError as exc:
                if reply.stop == LENGTH:
                    break
                self.entries.append(Entry("tool", f"error: {exc}. Nothing was run; call the tool again.",
                                          call_id=call.id, error=True))
                self.warnings.append(f"the model's call of {call.name!r} was malformed: {exc}")
        squeeze(entry, limit)   # the conversation keeps an echo of a long reply, never all of it
        if reply.stop == LENGTH and len(actions) < len(reply.calls) or reply.stop == LENGTH and not reply.calls:
            return self.cut(entry)
        if not entry.text and not entry.calls:
            entry.text = "(an empty answer)"
        if not reply.calls:
            self.entries.append(Entry("user", "You answered without calling a tool. Use the tools to do the "
                                              "work; when it is done, call finish with your summary."))
            raise InvalidToolCall("the model answered without calling a tool; it was asked to use one")
        if not actions:
            raise InvalidToolCall("no usable tool call; the model was told what was wrong")
        return actions

    def refused(self, reply: Reply) -> list[Action]:
        self.refusals += 1
        said = " ".join((reply.refusal or reply.text or "no reason given").split())
        self.entries.append(Entry("assistant", shorten(reply.text or reply.refusal or "(a refusal)", 2000)))
        if self.refusals >= MAX_REFUSALS:
            raise ModelError(f"the model refused {self.refusals} times in a row: {said[:300]}")
        self.entries.append(Entry("user", "Your last answer was a refusal. This job is the analysis of the "
                                          "user's own experiment data. If part of it cannot be done, do the "
                                          "rest, say so in report.md and call finish; otherwise go on with "
                                          "the tools."))
        raise InvalidToolCall(f"the model refused: {said[:300]}")

    def cut(self, entry: Entry) -> list[Action]:
        """A reply cut by the output-token cap: nothing runs; the model is told, and asked for less."""
        names = ", ".join(sorted({c.name for c in entry.calls})) or "text"
        entry.calls = []   # unfinished calls are not echoed (they would need results)
        entry.text = entry.text or f"(an answer cut short while writing {names})"
        self.entries.append(Entry("user", "Your last answer was cut at the output-token limit before it was "
                                          f"complete ({names}), so nothing was run. Continue in smaller pieces: "
                                          "write a long file in parts (write_file, then append to it with "
                                          "python), keep code and text short."))
        raise InvalidToolCall("the model's answer was cut by the output-token limit; it was asked to continue "
                              "in smaller pieces")

    def within_steps(self, actions: list[Action], steps_left: int) -> list[Action]:
        """Run only the calls that leave the last step for finish; the others are answered."""
        room = max(1, steps_left - 1)
        for dropped in actions[room:]:
            if dropped.kind != FINISH:
                self.entries.append(Entry("tool", "not run: too few steps left (the last one is for finish)",
                                          call_id=dropped.call_id, error=True))
        finish = [a for a in actions[room:] if a.kind == FINISH]
        return actions[:room] + finish[:1]

    def first_message(self, task: Task) -> str:
        given = task.instructions.strip() != DEFAULT_INSTRUCTIONS
        parts = [f"The user's instructions:\n{task.instructions}" if given else
                 "The user gave no instructions: profile and clean every dataset and write cleaned tables, "
                 "plots and a report."]
        parts += files_section(task, self.context_chars // 4)
        if task.previous:
            parts.append("This job continues earlier ones (a chain of follow-ups). Their results are in the "
                         "folders named below (read-only; copy what you change into /outputs). What they "
                         f"did:\n{shorten(task.previous, self.context_chars // 8, 0.7)}")
        if self.preamble_summary:
            parts.append("The standard analysis has already run (analyze_table.py on every file, then "
                         f"make_report.py): {self.preamble_summary}\nRead /outputs/report.md and the "
                         "profiles, check the results for problems, and add what a scientist would want to "
                         "know about this data (keep report.md up to date).")
        parts.append(steps_note(task.steps_left or task.max_steps))
        return "\n\n".join(parts)

    def call(self, system: str, entries: list[Entry], force_finish: bool = False) -> Reply:
        """One model call. Raises ModelError (ContextOverflow) when it fails for good; with
        `force_finish` the model may only call finish."""
        raise NotImplementedError


def out_of_steps(task: Task, reply: Reply) -> Action:
    """The end of a run whose model did not call finish on its last step: its words are the summary."""
    said = " ".join(reply.text.split())[:500]
    return Action(FINISH, status="failed", message=f"step limit of {task.max_steps} reached" + (f": {said}" if said else ""))


def steps_note(left: int) -> str:
    if left <= 1:
        return "[This is your last step: call finish now with your summary (what was done, what is left).]"
    if left <= WARN_STEPS:
        return (f"[Only {left} steps left, this one included: wrap up now. Make sure report.md is written; "
                "the last step is for finish.]")
    return f"[{left} steps left]"


def files_section(task: Task, budget: int) -> list[str]:
    """The uploads (kind, size, schema) and the reference material, within `budget` characters."""
    from agent_sandbox.agent.describe import describe
    from agent_sandbox.agent.models.offline import human_size
    uploads = [f for f in task.files if not f.get("reference")]
    references = [f for f in task.files if f.get("reference")]
    lines, used = [], 0
    for n, f in enumerate(uploads):
        path = Path(task.workspace, f["path"])
        head = f"- /workspace/{f['path']} ({human_size(f.get('size', 0))})"
        detail = describe(path) if n < 30 and used < budget else ""
        text = head + (": " + detail.replace("\n", "\n    ") if detail else "")
        used += len(text)
        lines.append(text if used < budget else head)
    parts = [f"Uploaded files ({len(uploads)}):\n" + ("\n".join(lines[:200]) or "(none)")
             + (f"\n- ... and {len(uploads) - 200} more" if len(uploads) > 200 else "")]
    if references:
        listed = "\n".join(f"- /workspace/{f['path']} ({human_size(f.get('size', 0))})" for f in references[:100])
        parts.append("Reference material from the lab's my_files (protocols, plate maps, notes: use it to "
                     f"interpret the uploads; it is not data to analyse unless asked) ({len(references)}):\n{listed}")
    return parts
