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
was killed tells which sandbox to end.
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
from agent_sandbox.backends import BACKENDS, UnknownBackend, get_backend
from agent_sandbox.followup import add_previous, load_manifest, previous_summary, record_run
from agent_sandbox.agent.models import AGENT_MODEL_SETTINGS, MODELS, UnknownModel, check_model, provider_notice
from agent_sandbox.outputs import MANIFEST, write_manifest
from agent_sandbox.relay.host import ModelAccess
from agent_sandbox.settings import SettingError, setting
from agent_sandbox.spec import Limits, RunSpec
from agent_sandbox.workspace import DEFAULT_MY_FILES, prepare_workspace


# Settings the agent reads inside the sandbox (never keys): the scripted test model's
# actions, the SDK's retries and timeout per model call.
AGENT_SETTINGS = ("AGENT_SCRIPT", *AGENT_MODEL_SETTINGS)


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
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
        output = output_folder(Path(args.output), args.force)
    except (SettingError, UnknownModel, UnknownBackend, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    job_id = secrets.token_hex(8)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="agent-sandbox-"))
    files = [str(Path(f).resolve()) for f in args.files]
    summary = ""
    notes: list[str] = []
    try:
        if args.follow_up:
            previous = load_manifest(Path(args.follow_up))
            if previous is None:
                raise FileNotFoundError(f"{args.follow_up} is not a results folder (no manifest.json)")
            files = files or list((previous.get("run") or {}).get("inputs") or [])
        workspace = prepare_workspace(root, job_id, files, my_files, notes)
        if args.follow_up:
            summary = previous_summary(Path(args.follow_up), add_previous(workspace, Path(args.follow_up)))
    except (FileNotFoundError, ValueError) as exc:  # ValueError: UnsafePath, a name clash
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes + [provider_notice(args.model)]:
        if note:
            print(f"note: {note}", file=sys.stderr)
    env = {k: os.environ[k] for k in AGENT_SETTINGS if os.environ.get(k)}
    spec = RunSpec(job_id=job_id, workspace=workspace, results=output, instructions=args.instructions,
                   model=args.model, limits=limits, env=env, network=args.network,
                   model_access=ModelAccess.from_env(args.model, dict(os.environ)), previous_summary=summary)

    def on_event(event: dict) -> None:
        sandbox_id = event["data"].get("sandbox_id") if event["type"] == ev.STATUS else None
        if sandbox_id:
            output.mkdir(parents=True, exist_ok=True)
            write_manifest(output, {"files": [], "skipped": [], "run": {
                "status": "running", "reason": "", "backend": args.backend, "sandbox_id": sandbox_id}})
        line = ev.encode(event) if args.json else ev.render(event)
        print(line, flush=True)

    cancel = threading.Event()
    signalled: list[int] = []

    def on_signal(signum: int, frame) -> None:
        if signalled:   # a second one: stop at once (the sandbox is still stopped on the way out)
            raise KeyboardInterrupt
        signalled.append(signum)
        cancel.set()
        print(f"{signal.Signals(signum).name}: stopping the sandbox; partial outputs go to {output}",
              file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        result = backend.run(spec, on_event, cancel)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if result.sandbox_id and "run" not in result.manifest:   # it ended before any output was collected
        write_manifest(output, {**result.manifest, "run": {"status": str(result.status), "reason": result.reason,
                                                           "backend": args.backend, "sandbox_id": result.sandbox_id}})
    record_run(output, {"instructions": args.instructions, "model": args.model, "status": result.status,
                        "reason": result.reason, "summary": result.summary, "usage": result.usage,
                        "inputs": files, "previous": str(Path(args.follow_up).resolve()) if args.follow_up else ""})
    if result.ok:
        print(f"results in {output} ({len(result.manifest['files'])} files, manifest.json)", file=sys.stderr)
        return 0
    print(f"error: run {result.status}: {result.reason}", file=sys.stderr)
    return 128 + signalled[0] if signalled else 1


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
