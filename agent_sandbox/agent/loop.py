"""The coding agent, run INSIDE the sandbox:

    python -m agent_sandbox.agent --workspace /workspace --outputs /outputs \
        [--instructions TEXT | --instructions-file F] [--model offline] \
        [--max-steps N] [--command-timeout S] [--model-retries N] [--model-timeout S]

A follow-up's summary of the earlier jobs is read from the workspace
(paths.PREVIOUS_SUMMARY), not given as an argument: a command line has a size limit.

The model proposes an action, the tool runs it in the workspace, the
observation goes back to the model, until it finishes or the step limit.
Everything is reported as JSON-line events on stdout (agent_sandbox.events).
Exit code: 0 when the run succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox import tree
from agent_sandbox.agent import lifeline, limit_watch
from agent_sandbox.agent.command_limits import CommandLimits
from agent_sandbox.agent.environment import DOCKER, MODAL, detect_environment, environment_details
from agent_sandbox.agent.models import (
    DEFAULT_INSTRUCTIONS,
    FINISH,
    READ_FILE,
    SHELL,
    WRITE_FILE,
    Action,
    Model,
    Observation,
    Task,
    Turn,
    UnknownModel,
    get_model,
)
from agent_sandbox.agent.outputs_sync import sync_outputs
from agent_sandbox.agent.process_tree import become_subreaper
from agent_sandbox.agent.tools import run_command
from agent_sandbox.paths import PREVIOUS_SUMMARY, REFERENCE_LIST, UnsafePath, reference_paths, safe_join
from agent_sandbox.spec import Limits

MAX_LISTED_FILES = 500
MAX_READ_CHARS = 20000   # most characters one read_file returns
MAX_FREE_STEPS = 1000    # the agent's own steps (not the model's) a run may take besides max_steps
OUTPUT_FILES = "agent-sandbox-output"   # folder in the sandbox's /tmp with each command's whole output


def list_workspace(workspace: Path) -> list[dict]:
    """[{path, size}] of the workspace's files; those copied from my_files have reference: True."""
    files = []
    references = reference_paths(workspace)
    for dirpath, dirnames, filenames in os.walk(workspace):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath, name)
            if full.is_symlink() or not full.is_file():
                continue
            rel = full.relative_to(workspace).as_posix()
            if rel in (REFERENCE_LIST, PREVIOUS_SUMMARY):
                continue
            files.append({"path": rel, "size": full.stat().st_size, **({"reference": True} if rel in references else {})})
            if len(files) >= MAX_LISTED_FILES:
                return files
    return files


def previous_summary(workspace: Path) -> str:
    """A follow-up's: what the earlier jobs did (the host wrote it into the workspace)."""
    path = workspace / PREVIOUS_SUMMARY
    if path.is_symlink() or not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


class Agent:
    def __init__(self, model: Model, task: Task, writer: ev.EventWriter, *,
                 max_steps: int, command_timeout: float, max_output_chars: int,
                 limits: dict | None = None):
        self.model = model
        self.task = task
        self.writer = writer
        self.max_steps = max_steps
        self.command_timeout = command_timeout
        self.max_output_chars = max_output_chars
        self.limits = limits or {}       # the sandbox's limits, to explain what they did
        self.stop = threading.Event()   # set by SIGTERM: kill the running command
        self.history: list[Turn] = []
        self.summary = ""               # the model's closing message
        self.channel = None             # the model relay (API models), told the current step
        self.command_limits: CommandLimits | None = None   # held by the agent itself (--hold-limits)

    def run(self) -> tuple[str, str]:
        """Returns (status, reason). Only the model's steps count against max_steps; the
        agent's own (Action.free: the playbook an LLM run starts with) do not."""
        from agent_sandbox.agent.models.llm import InvalidToolCall, ModelError
        self.setup()
        used, step = 0, 0
        while used < self.max_steps and step < self.max_steps + MAX_FREE_STEPS:
            step += 1
            if self.stop.is_set():
                return self.stopped()
            if self.channel is not None:
                self.channel.step = step
            self.task.steps_left = self.max_steps - used
            try:
                action = self.model.next_action(self.task, self.history)
            except InvalidToolCall as exc:  # the model was told; the step is spent
                used += 1
                self.warn(step)
                self.writer.emit(ev.WARNING, {"message": str(exc)}, step=step)
                continue
            except ModelError as exc:
                self.writer.emit(ev.ERROR, {"message": str(exc)}, step=step)
                return ev.FAILED, str(exc)
            except Exception as exc:  # a model failure ends the run; it must be reported, not crash
                self.writer.emit(ev.ERROR, {"message": f"model error: {exc}"}, step=step)
                return ev.FAILED, f"model error: {type(exc).__name__}: {exc}"
            used += 0 if action.free else 1
            self.warn(step)
            if action.thought:
                plan = {"of": action.planned_steps} if action.planned_steps else {}
                self.writer.emit(ev.STEP, {"text": action.thought, **plan}, step=step)
            if action.kind == FINISH:
                self.summary = action.message
                if action.message:
                    self.writer.emit(ev.MESSAGE, {"text": action.message}, step=step)
                status = ev.SUCCEEDED if action.status == ev.SUCCEEDED else ev.FAILED
                return status, "" if status == ev.SUCCEEDED else (action.message or "the agent gave up")
            observation = self.execute(action, step)
            self.history.append(Turn(action, observation))
            if observation.timed_out and not (0 < action.timeout < self.command_timeout):
                if self.stop.is_set():
                    return self.stopped()
                return ev.COMMAND_TIMEOUT, f"a command ran longer than {self.command_timeout:g}s"
            if self.stop.is_set():
                return self.stopped()
        return ev.FAILED, f"step limit of {self.max_steps} reached"

    def setup(self) -> None:
        """Files the model wants in /outputs before it starts (an LLM: the playbook's scripts)."""
        setup_files = getattr(self.model, "setup_files", None)
        for path, content in (setup_files(self.task) if setup_files else []):
            dest = safe_join(Path(self.task.outputs), path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(content, encoding="utf-8")
            self.writer.emit(ev.FILE_WRITTEN, {"path": path, "size": len(content.encode("utf-8"))}, step=0)

    def warn(self, step: int) -> None:
        take = getattr(self.model, "take_warnings", None)
        for message in (take() if take else []):
            self.writer.emit(ev.WARNING, {"message": message}, step=step)

    @staticmethod
    def stopped() -> tuple[str, str]:
        # Not "cancelled": a command in the sandbox can send it too (kill -TERM 1). When
        # the host stopped the run, the host knows and reports its own status.
        return ev.FAILED, "the agent was stopped by SIGTERM"

    def execute(self, action: Action, step: int) -> Observation:
        if action.kind == WRITE_FILE:
            return self.write_file(action, step)
        if action.kind == READ_FILE:
            return self.read_file(action, step)
        if action.kind == SHELL:
            argv, shown = ["/bin/sh", "-c", action.command], action.command
        else:  # PYTHON
            argv, shown = [sys.executable, "-c", action.code], action.code
        timeout = action.timeout if 0 < action.timeout < self.command_timeout else self.command_timeout
        self.writer.emit(ev.COMMAND_STARTED, {"kind": action.kind, "command": shown,
                                              "timeout": timeout}, step=step)

        def on_output(stream: str, text: str) -> None:
            self.writer.emit(ev.OUTPUT, {"stream": stream, "text": text}, step=step)

        counters = limit_watch.read_counters()
        obs = run_command(argv, cwd=self.task.workspace, timeout=timeout,
                          max_chars=self.max_output_chars, on_output=on_output, stop=self.stop,
                          full_output=Path(tempfile.gettempdir(), OUTPUT_FILES, f"step-{step}.txt"),
                          limits=self.command_limits)
        held = self.command_limits.notes(obs.exit_code, obs.output) if self.command_limits else []
        for note in limit_watch.explain(counters, limit_watch.read_counters(), self.limits) + held:
            self.writer.emit(ev.WARNING, {"message": note}, step=step)
            obs.output += f"\n[{note}]"
        if obs.truncated:
            self.writer.emit(ev.OUTPUT, {"stream": "stdout", "text": "",
                                         "truncated": True}, step=step)
        self.writer.emit(ev.COMMAND_FINISHED, {"exit_code": obs.exit_code, "duration": round(obs.duration, 3),
                                               "timed_out": obs.timed_out, "truncated": obs.truncated},
                         step=step)
        return obs

    def read_file(self, action: Action, step: int) -> Observation:
        """Part of a text file: at most MAX_READ_CHARS characters from `offset`, with what is left."""
        self.writer.emit(ev.COMMAND_STARTED, {"kind": READ_FILE, "command": f"read {action.path}"}, step=step)
        path = Path(self.task.workspace, action.path)   # an absolute path stays as it is
        limit = min(action.limit or MAX_READ_CHARS, MAX_READ_CHARS)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(action.offset + limit + 1)[action.offset:]
        except OSError as exc:
            self.writer.emit(ev.COMMAND_FINISHED, {"exit_code": 1, "duration": 0.0, "timed_out": False}, step=step)
            return Observation(exit_code=1, output=f"could not read {action.path}: {exc.strerror or exc}")
        more = len(text) > limit
        text = text[:limit]
        if more:
            text += f"\n[more follows: read again with offset={action.offset + limit}]"
        self.writer.emit(ev.OUTPUT, {"stream": "stdout", "text": text[:2000] + ("\n..." if len(text) > 2000 else "")},
                         step=step)
        self.writer.emit(ev.COMMAND_FINISHED, {"exit_code": 0, "duration": 0.0, "timed_out": False}, step=step)
        return Observation(exit_code=0, output=text)

    def write_file(self, action: Action, step: int) -> Observation:
        self.writer.emit(ev.COMMAND_STARTED, {"kind": WRITE_FILE, "command": f"write {action.path}"}, step=step)
        try:
            dest = safe_join(Path(self.task.outputs), action.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = action.content.encode("utf-8")
            if dest.is_symlink():
                raise UnsafePath(f"refusing to write through a symlink: {action.path}")
            dest.write_bytes(data)
        except (OSError, UnsafePath) as exc:
            self.writer.emit(ev.COMMAND_FINISHED, {"exit_code": 1, "duration": 0.0, "timed_out": False}, step=step)
            return Observation(exit_code=1, output=f"could not write {action.path}: {exc}")
        self.writer.emit(ev.FILE_WRITTEN, {"path": action.path, "size": len(data)}, step=step)
        self.writer.emit(ev.COMMAND_FINISHED, {"exit_code": 0, "duration": 0.0, "timed_out": False}, step=step)
        return Observation(exit_code=0, output=f"wrote {len(data)} bytes to {dest}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent_sandbox.agent",
                                description="Run the coding agent (inside a sandbox).")
    p.add_argument("--workspace", required=True, help="folder with the inputs")
    p.add_argument("--outputs", required=True, help="folder for the results")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--instructions", default=None)
    group.add_argument("--instructions-file", default=None)
    p.add_argument("--model", default="offline")
    defaults = Limits()  # the defaults only: inside the sandbox the host's variables do not apply
    p.add_argument("--max-steps", type=int, default=defaults.max_steps)
    p.add_argument("--command-timeout", type=float, default=defaults.command_timeout)
    p.add_argument("--max-output-chars", type=int, default=defaults.max_output_chars)
    p.add_argument("--max-context-chars", type=int, default=defaults.max_context_chars)
    p.add_argument("--model-retries", type=int, default=defaults.model_retries,
                   help="retries of a failed model call (the SDK's)")
    p.add_argument("--model-timeout", type=float, default=defaults.model_timeout,
                   help="seconds one model call may take, retries included")
    p.add_argument("--network", action="store_true", help="the commands have outbound network")
    p.add_argument("--secrets-from-stdin", action="store_true",
                   help="read a JSON object of secrets (API keys) from the first line of stdin")
    p.add_argument("--limits-enforced", default="{}", type=json.loads,
                   help="JSON: for each sandbox limit, what enforces it (or 'not enforced: why')")
    p.add_argument("--limits", default="{}", type=json.loads,
                   help="JSON: the sandbox's limits (memory_mb, max_processes, disk_mb, cpu)")
    p.add_argument("--hold-limits", action="store_true",
                   help="hold each command to the sandbox's memory, process and disk limits (command_limits.py)")
    p.add_argument("--max-processes", type=int, default=0,
                   help="cap processes with RLIMIT_NPROC (only where that count is the sandbox's own)")
    return p.parse_args(argv)


def protect_secrets(from_stdin: bool) -> None:
    """Keep secrets where only the agent can read them.

    Secrets arrive on stdin (local, Docker) or in the environment (Modal
    secrets). Either way they end up in os.environ for the model's SDK, and
    the process is made non-dumpable so commands (which run without
    capabilities) cannot read them from /proc/<agent>/environ or memory.
    """
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except (OSError, AttributeError):
        pass
    if from_stdin:
        line = sys.stdin.readline()
        secrets = {str(k): str(v) for k, v in json.loads(line).items()} if line.strip() else {}
        os.environ.update(secrets)
        # Commands never see these, whatever their names (tools.command_env).
        names = {n for n in os.environ.get("AGENT_SANDBOX_SECRET_NAMES", "").split(",") if n} | set(secrets)
        if names:
            os.environ["AGENT_SANDBOX_SECRET_NAMES"] = ",".join(sorted(names))


def count_files(folder: Path, leave_out: str = "") -> int:
    """Regular files under `folder` (bounded, symlinks not followed)."""
    try:
        return sum(1 for found in tree.walk(folder, 64, 100_000)
                   if found.kind == tree.FILE and found.path != leave_out)
    except OSError:
        return 0


def wait_for_network(timeout: float = 15.0) -> bool:
    """The opt-in network is attached by the host just after the sandbox starts:
    wait for its default route, so the first command already has it."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            routes = Path("/proc/net/route").read_text().splitlines()[1:]
        except OSError:
            return False
        # A default route (destination and mask 0) through a real device; the fence's
        # prohibit routes have no device ("*").
        if any(f[1] == "00000000" and f[7] == "00000000" and f[0] not in ("lo", "*")
               for f in (r.split() for r in routes) if len(f) > 7):
            return True
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.max_processes:
        limit_watch.apply_process_limit(args.max_processes)
    protect_secrets(args.secrets_from_stdin)
    sys.stdout.reconfigure(line_buffering=True)
    outputs = Path(args.outputs)
    outputs.mkdir(parents=True, exist_ok=True)
    environment = detect_environment()
    # On Docker the container's stdout may be all an operator sees later: keep a copy.
    mirror = open(outputs / "agent.log", "a", encoding="utf-8") if environment == DOCKER else None
    writer = ev.EventWriter(sys.stdout, mirror)
    become_subreaper()
    lifeline.watch_host()   # the host gone (even SIGKILLed): end everything and exit

    instructions = args.instructions
    if args.instructions_file:
        instructions = Path(args.instructions_file).read_text(encoding="utf-8")
    task = Task(instructions=instructions or DEFAULT_INSTRUCTIONS, workspace=str(Path(args.workspace)),
                outputs=str(outputs), files=list_workspace(Path(args.workspace)), environment=environment,
                max_steps=args.max_steps, network=args.network, previous=previous_summary(Path(args.workspace)))
    limits = {**args.limits, "max_steps": args.max_steps, "command_timeout": args.command_timeout,
              "max_output_chars": args.max_output_chars, "max_context_chars": args.max_context_chars,
              **({"model_retries": args.model_retries, "model_timeout": args.model_timeout}
                 if args.model.partition(":")[0] in ("openai", "anthropic") else {})}
    writer.emit(ev.RUN_STARTED, {**environment_details(environment), "model": args.model,
                                 "limits": limits, "limits_enforced": args.limits_enforced,
                                 "instructions": task.instructions,
                                 "workspace": task.workspace, "outputs": task.outputs,
                                 "files": len(task.files), "python": sys.version.split()[0]})
    for name, how in sorted(args.limits_enforced.items()):
        if how.startswith("not enforced"):
            writer.emit(ev.WARNING, {"message": f"limit {name} ({limits.get(name, '?')}) is {how}"})
    if args.network and not wait_for_network():
        writer.emit(ev.WARNING, {"message": "the opt-in network did not come up; commands run without it"})
    try:
        model = get_model(args.model)
    except UnknownModel as exc:
        writer.emit(ev.ERROR, {"message": str(exc)})
        writer.emit(ev.RUN_FINISHED, {"status": ev.FAILED, "reason": str(exc), "steps": 0})
        return 1

    agent = Agent(model, task, writer, max_steps=args.max_steps, command_timeout=args.command_timeout,
                  max_output_chars=args.max_output_chars, limits=limits)
    if args.hold_limits:   # before anything runs: the platform holds none of these for us
        agent.command_limits = CommandLimits.start(args.limits, task.workspace, task.outputs)
    if getattr(model, "needs_relay", False):
        # Model calls go to the host as events; its replies come back on our stdin.
        from agent_sandbox.relay.agent import RelayChannel
        agent.channel = RelayChannel(writer, sys.stdin)
        model.connect(agent.channel, args.max_context_chars, args.model_retries, args.model_timeout)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    status, reason = agent.run()
    if environment == MODAL and (problem := sync_outputs(str(outputs))):   # v2 volumes sync at the end, or now
        writer.emit(ev.WARNING, {"message": problem})
    # How many files it leaves, so the host can tell when they did not come back.
    left = count_files(outputs, leave_out="agent.log" if mirror else "")
    writer.emit(ev.RUN_FINISHED, {"status": status, "reason": reason, "steps": len(agent.history),
                                  "summary": agent.summary, "output_files": left})
    if mirror:
        mirror.close()
    return 0 if status == ev.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
