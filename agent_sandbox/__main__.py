"""Host CLI: run the agent on some files in a sandbox and keep the results.

    python -m agent_sandbox run [--backend local] [--model offline] \
        [--instructions TEXT] [--follow-up RESULTS] [--json] --output DIR FILE...

Prints the live log (with --json: the raw events), leaves the outputs and
manifest.json in DIR, exits 0 on success and non-zero with a one-line reason.
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
from dataclasses import dataclass
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox import settings
from agent_sandbox.backends import UnknownBackend, get_backend
from agent_sandbox.models import AGENT_MODEL_SETTINGS
from agent_sandbox.followup import add_previous, load_manifest, previous_summary, record_run
from agent_sandbox.outputs import UnsafePath, write_manifest
from agent_sandbox.relay import ModelAccess
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


def parse_args(argv: list[str] | None, defaults: CliSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent_sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent on FILEs in a sandbox")
    run.add_argument("files", nargs="*", metavar="FILE")
    run.add_argument("--output", required=True, metavar="DIR", help="where results and manifest.json go")
    run.add_argument("--backend", default=defaults.backend)
    run.add_argument("--model", default=defaults.model)
    run.add_argument("--instructions", default="")
    run.add_argument("--follow-up", metavar="RESULTS", default="",
                     help="continue the run whose results are in RESULTS (its results go to /workspace/previous)")
    run.add_argument("--json", action="store_true", help="print raw JSON events")
    run.add_argument("--my-files", default=str(defaults.my_files or ""))
    run.add_argument("--workdir", default=str(defaults.workdir or ""),
                     help="root for uploaded_files/<job_id> (default: a temporary folder)")
    run.add_argument("--run-timeout", type=float)
    run.add_argument("--command-timeout", type=float)
    run.add_argument("--idle-timeout", type=float)
    run.add_argument("--max-steps", type=int)
    run.add_argument("--max-tokens", type=int, help="model tokens the run may spend (0: no limit)")
    run.add_argument("--network", action="store_true",
                     help="give the agent's commands outbound network (never the host's or private addresses)")
    args = parser.parse_args(argv)
    if not args.files and not args.follow_up:
        parser.error("name the input FILEs (or --follow-up RESULTS)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args = parse_args(argv, settings.load(CliSettings))
        given = {"run_timeout": args.run_timeout, "command_timeout": args.command_timeout,
                 "idle_timeout": args.idle_timeout, "max_steps": args.max_steps, "max_tokens": args.max_tokens}
        limits = Limits.from_env(**{name: value for name, value in given.items() if value is not None})
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        print(f"error: output folder {output} is not empty", file=sys.stderr)
        return 2
    job_id = secrets.token_hex(8)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="agent-sandbox-"))
    files = [str(Path(f).resolve()) for f in args.files]
    summary = ""
    try:
        if args.follow_up:
            previous = load_manifest(Path(args.follow_up))
            if previous is None:
                raise FileNotFoundError(f"{args.follow_up} is not a results folder (no manifest.json)")
            files = files or list((previous.get("run") or {}).get("inputs") or [])
        workspace = prepare_workspace(root, job_id, files, Path(args.my_files) if args.my_files else None)
        if args.follow_up:
            summary = previous_summary(Path(args.follow_up), add_previous(workspace, Path(args.follow_up)))
        backend = get_backend(args.backend)
    except (FileNotFoundError, UnsafePath, UnknownBackend, SettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
