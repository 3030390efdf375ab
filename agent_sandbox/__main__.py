"""Host CLI: run the agent on some files in a sandbox and keep the results.

    python -m agent_sandbox run [--backend local] [--model offline] \
        [--instructions TEXT] [--follow-up RESULTS] [--json] [--force] --output DIR FILE...

Prints the live log (with --json: the raw events), leaves the outputs and
manifest.json in DIR, exits 0 on success and non-zero with a one-line reason.
Everything that can be checked before the sandbox starts is (options, limits,
model, backend, folders), each failure one line naming what to change.
An API model's key and endpoint (OPENAI_API_KEY, OPENAI_BASE_URL, ...) stay in
this process: the sandbox reaches the model through the relay.
`--follow-up RESULTS` continues an earlier run from its results folder: its
inputs (the FILEs recorded there unless others are given) plus its results in
/workspace/previous/.

Ctrl-C or SIGTERM cancels the run: the sandbox is stopped and the partial
outputs are collected, the manifest's "run" saying "cancelled" (a second
signal stops at once, without collecting). As soon as the sandbox exists the
manifest says "running" with its sandbox id, so a folder left by a CLI that
was killed tells which sandbox to end. The run's workspace (a copy of the
inputs and my_files) is removed when the run ends, however it ends.

This module is option parsing and printing: the run itself is agent_sandbox.jobs.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox import settings, tree
from agent_sandbox.agent.models import MODELS, UnknownModel, check_model, provider_notice
from agent_sandbox.backends import BACKENDS, UnknownBackend, get_backend
from agent_sandbox.backends.contract import Backend
from agent_sandbox.jobs import Job, continue_from, run_job
from agent_sandbox.manifest import MANIFEST, load_manifest, run_record
from agent_sandbox.settings import SettingError, setting
from agent_sandbox.spec import Limits
from agent_sandbox.workspace import DEFAULT_MY_FILES, add_files, fill_workspace, job_workspace, remove_workspace


@dataclass
class CliSettings:
    """The CLI's defaults (its options win)."""

    backend: str = setting("AGENT_SANDBOX_BACKEND", "local", "backend (`--backend`)")
    model: str = setting("AGENT_SANDBOX_MODEL", "offline", "model (`--model`)")
    my_files: Path | None = setting("AGENT_SANDBOX_MY_FILES", DEFAULT_MY_FILES,
                                    "folder copied into every workspace (`--my-files`)", shown="`my_files/`")
    workdir: Path | None = setting("AGENT_SANDBOX_WORKDIR", None,
                                   "where `uploaded_files/<job_id>/` is prepared (`--workdir`); "
                                   "`AGENT_SANDBOX_OUTPUTS` is its deprecated name",
                                   shown="a temporary folder", old=("AGENT_SANDBOX_OUTPUTS",))


class CliParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see python -m agent_sandbox run --help)\n")


def above_zero(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def parse_args(argv: list[str] | None, defaults: CliSettings) -> argparse.Namespace:
    parser = CliParser(prog="python -m agent_sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent on FILEs in a sandbox")
    run.add_argument("files", nargs="*", metavar="FILE")
    run.add_argument("--output", required=True, metavar="DIR",
                     help="new or empty folder for the results and manifest.json")
    run.add_argument("--force", action="store_true",
                     help="replace the results of an earlier run in DIR")
    run.add_argument("--backend", default=defaults.backend, metavar="NAME",
                     help=f"sandbox: {', '.join(BACKENDS)} (default {defaults.backend})")
    run.add_argument("--model", default=defaults.model, metavar="NAME",
                     help=f"model: {', '.join(MODELS)}, as NAME or NAME:VARIANT, e.g. openai:gpt-4o-mini "
                          f"(default {defaults.model})")
    run.add_argument("--instructions", default="", metavar="TEXT", help="what the agent should do")
    run.add_argument("--follow-up", metavar="RESULTS", default="",
                     help="continue the run whose results are in RESULTS (its results go to /workspace/previous)")
    run.add_argument("--json", action="store_true", help="print raw JSON events")
    run.add_argument("--my-files", default=None, metavar="DIR",
                     help=f"folder copied into every workspace (default {defaults.my_files}, when it exists; "
                          "\"\": none)")
    run.add_argument("--workdir", default=str(defaults.workdir or ""),
                     help="root for uploaded_files/<job_id> (default: a temporary folder)")
    run.add_argument("--run-timeout", type=above_zero(float), metavar="S",
                     help="seconds for the whole run (default AGENT_SANDBOX_RUN_TIMEOUT, 1800)")
    run.add_argument("--command-timeout", type=above_zero(float), metavar="S",
                     help="seconds for one command (default AGENT_SANDBOX_COMMAND_TIMEOUT, 300)")
    run.add_argument("--idle-timeout", type=above_zero(float), metavar="S",
                     help="seconds without output (default AGENT_SANDBOX_IDLE_TIMEOUT, 600)")
    run.add_argument("--max-steps", type=above_zero(int), metavar="N",
                     help="agent steps (default AGENT_SANDBOX_MAX_STEPS, 40)")
    run.add_argument("--max-tokens", type=int, metavar="N", help="model tokens the run may spend (0: no limit)")
    run.add_argument("--network", action="store_true",
                     help="give the agent's commands outbound network (never the host's or private addresses)")
    args = parser.parse_args(argv)
    if not args.files and not args.follow_up:
        parser.error("name the input FILEs (or --follow-up RESULTS)")
    return args


class CliError(Exception):
    """A one-line reason to stop before the sandbox starts."""


@dataclass
class Checked:
    """What the options say, every part checked before anything is prepared."""

    args: argparse.Namespace
    limits: Limits
    my_files: Path | None
    output: Path
    backend: Backend


def check(argv: list[str] | None) -> Checked:
    defaults = settings.load(CliSettings)
    args = parse_args(argv, defaults)
    given = {"run_timeout": args.run_timeout, "command_timeout": args.command_timeout,
             "idle_timeout": args.idle_timeout, "max_steps": args.max_steps, "max_tokens": args.max_tokens}
    limits = Limits.from_env(**{name: value for name, value in given.items() if value is not None})
    check_model(args.model)
    backend = get_backend(args.backend)
    my_files = chosen_my_files(args.my_files, defaults.my_files)
    if args.follow_up and Path(args.follow_up).resolve() == Path(args.output).resolve():
        raise CliError("--output names the folder --follow-up continues from; choose a new one for its results")
    return Checked(args, limits, my_files, output_folder(Path(args.output), args.force), backend)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        checked = check(argv)
    except (SettingError, UnknownModel, UnknownBackend, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopping = Stopping(checked.output)
    # The workspace is a copy of the inputs and my_files: it goes when the run ends, however it ends.
    workdir = Path(checked.args.workdir) if checked.args.workdir else None
    root = workdir or Path(tempfile.mkdtemp(prefix="agent-sandbox-"))
    workspace = job_workspace(root, secrets.token_hex(8))
    try:
        return run(checked, workspace, stopping)
    except KeyboardInterrupt:   # a second signal: the sandbox is stopped on the way out
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:   # the run is over, however it ended: nothing may cut its clean-up short
        stopping.ignore()
        remove_workspace(root if workdir is None else workspace)


class Stopping:
    """Ctrl-C or SIGTERM: the first cancels the run (its partial outputs are collected),
    a second stops at once."""

    def __init__(self, output: Path):
        self.output, self.cancel, self.signalled = output, threading.Event(), []
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)

    def on_signal(self, signum: int, frame) -> None:
        if self.signalled:   # a second one: stop at once (the sandbox is still stopped on the way out)
            self.ignore()    # and nothing cuts that short
            raise KeyboardInterrupt
        self.signalled.append(signum)
        self.cancel.set()
        print(f"{signal.Signals(signum).name}: stopping the sandbox; partial outputs go to {self.output}",
              file=sys.stderr, flush=True)

    def ignore(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def run(checked: Checked, workspace: Path, stopping: Stopping) -> int:
    args = checked.args
    files = [str(Path(f).resolve()) for f in args.files]
    notes: list[str] = []
    summary = ""
    try:
        if args.follow_up:
            previous = load_manifest(Path(args.follow_up))
            if previous is None:
                raise FileNotFoundError(f"{args.follow_up} is not a results folder (no {MANIFEST})")
            files = files or list(run_record(previous).get("inputs") or [])
        fill_workspace(workspace, lambda ws: add_files(ws, files), checked.my_files, notes)
        if args.follow_up:
            summary = continue_from(workspace, Path(args.follow_up))
    except (FileNotFoundError, ValueError) as exc:  # ValueError: UnsafePath, a name clash
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes + [provider_notice(args.model)]:
        if note:
            print(f"note: {note}", file=sys.stderr)
    # The scripted test model's actions come from this process's environment too.
    env = {"AGENT_SCRIPT": os.environ["AGENT_SCRIPT"]} if os.environ.get("AGENT_SCRIPT") else {}
    job = Job(id=workspace.name, workspace=workspace, results=checked.output, backend=args.backend,
              model=args.model, instructions=args.instructions, env=env, limits=checked.limits,
              network=args.network, previous_summary=summary,
              record={"inputs": files, "previous": str(Path(args.follow_up).resolve()) if args.follow_up else ""})

    def on_event(event: dict) -> None:
        print(ev.encode(event) if args.json else ev.render(event), flush=True)

    result = run_job(job, on_event, stopping.cancel, backend=checked.backend, mark=True)
    if result.ok:
        print(f"results in {checked.output} ({len(result.manifest['files'])} files, manifest.json)", file=sys.stderr)
        return 0
    print(f"error: run {result.status}: {result.reason}", file=sys.stderr)
    return 128 + stopping.signalled[0] if stopping.signalled else 1


def chosen_my_files(option: str | None, default: Path | None) -> Path | None:
    """The my_files folder to copy: one named (option or variable) must exist; the default may not."""
    if option == "":
        return None
    if option is None and (default is None or default == DEFAULT_MY_FILES):
        return default if default is not None and default.is_dir() else None
    folder = Path(option if option is not None else default)
    if not folder.is_dir():
        source = "--my-files" if option is not None else "AGENT_SANDBOX_MY_FILES"
        raise CliError(f"{source} {folder}: no such folder")
    return folder


def output_folder(output: Path, force: bool) -> Path:
    """The results folder, made absolute once: new, empty, or (with --force) an earlier run's results."""
    output = output.absolute()
    if output.exists() and not output.is_dir():
        raise CliError(f"--output {output} is a file; name a folder for the results")
    if not output.exists() or not any(output.iterdir()):
        return output
    fresh = f"{output}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not (output / MANIFEST).is_file():
        raise CliError(f"--output {output} is not empty; choose an empty or new folder, e.g. --output {fresh}")
    if not force:
        raise CliError(f"--output {output} already holds the results of a run; add --force to replace them, "
                       f"or keep them and choose a new folder, e.g. --output {fresh}")
    for child in output.iterdir():  # --force: an earlier run's results (its manifest.json says so) go
        if child.is_dir() and not child.is_symlink():
            tree.remove_tree(child)
        else:
            child.unlink()
    return output


if __name__ == "__main__":
    sys.exit(main())
