"""The Modal backend: the agent in a Modal Sandbox.

One run: look up the app, build the image definition (debian_slim + the
agent's runtime packages + the agent_sandbox package + this job's workspace
at /workspace, the local layers last), open an ephemeral volume at /outputs,
create the sandbox (retried with backoff on transient errors only), exec the
agent with line-buffered output streamed into events, then terminate, wait
(Modal syncs the volume at termination) and bring the outputs back through
the shared `collect_outputs`. The volume goes away with its context.

Secrets reach the agent as a Modal Secret on its exec only: never in the
image, the sandbox's own environment, events or logs. Sandboxes are tagged
with the job id and an owner, so `sweep_orphans` finds those a crashed
process left behind.

Credentials and the server come from Modal's usual config (MODAL_TOKEN_ID,
MODAL_TOKEN_SECRET, MODAL_SERVER_URL, ~/.modal.toml); our settings come from
AGENT_SANDBOX_MODAL_* variables (see ModalConfig).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Iterator

import modal
import modal.exception as mexc
from grpclib.exceptions import StreamTerminatedError

from agent_sandbox import events as ev
from agent_sandbox import netjail
from agent_sandbox.backends import EventCallback, process_alive, this_process
from agent_sandbox.backends.monitor import RunMonitor
from agent_sandbox.outputs import DIR, FILE, SPECIAL, SYMLINK, OutputEntry, collect_outputs
from agent_sandbox.spec import RunResult, RunSpec

# What the agent needs inside the sandbox (pyproject's runtime dependencies for it).
RUNTIME_PACKAGES = ("duckdb>=1.1", "pandas>=2.1", "pyarrow>=15", "openpyxl>=3.1", "matplotlib>=3.8",
                    "pillow>=9", "openai>=3.50", "anthropic>=2.10")
JOB_TAG, OWNER_TAG, PROCESS_TAG = "agent_sandbox_job", "agent_sandbox_owner", "agent_sandbox_process"
MAX_MODAL_TIMEOUT = 24 * 3600
ENV_PREFIX = "AGENT_SANDBOX_MODAL_"
# What holds each sandbox limit on Modal (reported in run_started).
ENFORCEMENT = {
    "memory_mb": "Modal's hard memory limit",
    "cpu": "Modal's CPU limit",
    "max_processes": "not enforced: Modal takes no process limit for Sandboxes (its own per-sandbox limits apply)",
    "disk_mb": "not enforced: Modal takes no disk size for Sandboxes (its own per-sandbox disk applies)",
}
log = logging.getLogger(__name__)

# Creation failures worth another try: Modal busy, rate limited or briefly unreachable.
TRANSIENT_ERRORS = (mexc.ServiceError, mexc.InternalError, mexc.ResourceExhaustedError,
                    mexc.TimeoutError, mexc.ConnectionError, ConnectionError, OSError,
                    StreamTerminatedError)


def _split(value: str) -> list[str]:
    return [item for item in value.replace(",", " ").split() if item]


@dataclass
class ModalConfig:
    """Settings; each field also reads AGENT_SANDBOX_MODAL_<FIELD> (e.g. ..._APP_NAME)."""

    app_name: str = "sandbox-environment"      # Modal app the sandboxes run under
    environment: str = ""                      # Modal environment ("" = the client's default)
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"  # Python of the image
    extra_packages: list[str] = field(default_factory=list)  # pip packages added to the image
    outbound_domains: list[str] = field(default_factory=list)  # network allowlist when the model needs an API ([] = open)
    timeout_margin: float = 60.0               # seconds Modal's own limits exceed ours, so ours fire first
    create_attempts: int = 4                   # tries to create the sandbox on transient errors
    retry_delay: float = 1.0                   # seconds before the first retry; doubles each time
    terminate_wait: float = 60.0               # seconds to wait for the sandbox (and volume sync) to end
    owner: str = field(default_factory=socket.gethostname)  # owner tag: the sweep only touches ours

    @classmethod
    def from_env(cls, **overrides: Any) -> "ModalConfig":
        config = cls()
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw not in (None, ""):
                current = getattr(config, f.name)
                if isinstance(current, list):
                    value: Any = _split(raw)
                elif isinstance(current, (int, float)) and not isinstance(current, bool):
                    value = type(current)(float(raw))
                else:
                    value = raw
                setattr(config, f.name, value)
        for name, value in overrides.items():
            if name not in {f.name for f in fields(cls)}:
                raise TypeError(f"unknown Modal backend setting {name!r}")
            setattr(config, name, _split(value) if isinstance(value, str) and
                    isinstance(getattr(config, name), list) else value)
        return config


class ModalRunError(Exception):
    """A failure that ends the run with status "error" and this message."""


_base_images: dict[tuple, modal.Image] = {}
_base_lock = threading.Lock()


def base_image(config: ModalConfig) -> modal.Image:
    """The part of the image every job shares, defined (and uploaded) once per process.

    The agent's package is a local layer; a job's workspace is the only other
    one, and Modal allows local layers only at the end.
    """
    key = (config.python_version, tuple(config.extra_packages))
    with _base_lock:
        if key not in _base_images:
            _base_images[key] = (modal.Image.debian_slim(python_version=config.python_version)
                                 .pip_install(*RUNTIME_PACKAGES, *config.extra_packages)
                                 .add_local_python_source("agent_sandbox"))
        return _base_images[key]


def job_image(config: ModalConfig, spec: RunSpec) -> modal.Image:
    return base_image(config).add_local_dir(str(spec.workspace), "/workspace")


class VolumeSource:
    """An OutputSource over a Modal volume; opens only what it listed as a regular file."""

    KINDS = {modal.volume.FileEntryType.FILE: FILE, modal.volume.FileEntryType.DIRECTORY: DIR,
             modal.volume.FileEntryType.SYMLINK: SYMLINK}

    def __init__(self, volume: modal.Volume):
        self.volume = volume
        self._files: set[str] = set()

    def entries(self) -> Iterator[OutputEntry]:
        for entry in self.volume.listdir("/", recursive=True):
            path = entry.path.lstrip("/")
            kind = self.KINDS.get(entry.type, SPECIAL)
            if kind == FILE:
                self._files.add(path)
            yield OutputEntry(path, kind, entry.size)

    def open(self, path: str) -> io.BufferedReader:
        if path not in self._files:
            raise OSError(f"not a regular file: {path}")
        return io.BufferedReader(_ChunkReader(self.volume.read_file(path)))


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (Volume.read_file)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class ModalBackend:
    name = "modal"

    def __init__(self, **config: Any):
        self.config = ModalConfig.from_env(**config)

    # -- public -------------------------------------------------------------
    def run(self, spec: RunSpec, on_event: EventCallback,
            cancel: threading.Event | None = None) -> RunResult:
        monitor = RunMonitor(spec, on_event, cancel)
        if not spec.workspace.is_dir():
            return self._error(monitor, f"workspace {spec.workspace} does not exist")
        try:
            monitor.status("starting", f"preparing the Modal sandbox (app {self.config.app_name})")
            app = self._lookup_app()
            image = job_image(self.config, spec)
            with modal.Volume.ephemeral(**self._env_kwargs()) as volume:
                sandbox = self._create_sandbox(spec, monitor, app, image, volume)
                if sandbox is None:  # cancelled while starting
                    status, reason = monitor.should_stop() or (ev.CANCELLED, "cancelled by the user")
                    return self._finish(monitor, status, reason, None, VolumeSource(volume), spec)
                try:
                    exit_code = self._supervise(spec, monitor, sandbox)
                finally:
                    self._terminate(sandbox, monitor)
                status, reason = self._outcome(monitor, sandbox, exit_code)
                return self._finish(monitor, status, reason, exit_code, VolumeSource(volume), spec)
        except ModalRunError as exc:
            return self._error(monitor, str(exc))
        except TRANSIENT_ERRORS + (mexc.Error,) as exc:
            return self._error(monitor, describe_error(exc))

    def sweep_orphans(self) -> int:
        """Terminate this owner's sandboxes whose starting process is gone (it crashed).

        Sandboxes of live processes on this host (a CLI run, another web app)
        are left alone. Modal being unreachable is logged, not raised: it must
        not stop a web app.
        """
        swept = 0
        try:
            app = modal.App.lookup(self.config.app_name, **self._env_kwargs())
            for sandbox in modal.Sandbox.list(app_id=app.app_id, tags={OWNER_TAG: self.config.owner}):
                if process_alive(sandbox.get_tags().get(PROCESS_TAG, "")):
                    continue
                sandbox.terminate()
                swept += 1
        except mexc.NotFoundError:
            pass  # no app yet: nothing can be left over
        except TRANSIENT_ERRORS + (mexc.Error,) as exc:
            log.warning("orphan sweep incomplete (%d terminated): %s", swept, describe_error(exc))
        return swept

    # -- steps --------------------------------------------------------------
    def _env_kwargs(self) -> dict[str, str]:
        return {"environment_name": self.config.environment} if self.config.environment else {}

    def _lookup_app(self) -> modal.App:
        return self._retrying(lambda: modal.App.lookup(self.config.app_name, create_if_missing=True,
                                                       **self._env_kwargs()), None, "look up the app")

    def _create_sandbox(self, spec: RunSpec, monitor: RunMonitor, app: modal.App,
                        image: modal.Image, volume: modal.Volume) -> modal.Sandbox | None:
        limits, margin = spec.limits, self.config.timeout_margin
        # Model calls go through the relay: no network, unless the opt-in asks for it, and
        # then never private ranges (Modal's own network, cloud metadata) or an explicit allowlist.
        network: dict[str, Any] = {"block_network": not spec.needs_network}
        if spec.needs_network:
            network = ({"outbound_domain_allowlist": list(self.config.outbound_domains)}
                       if self.config.outbound_domains else {"outbound_cidr_allowlist": netjail.public_ranges()})

        attempts = 0

        def create() -> modal.Sandbox:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # a lost reply may hide a sandbox that was created after all
                self._end_job_sandboxes(app, spec.job_id)
            return modal.Sandbox.create(
                app=app, image=image, volumes={"/outputs": volume}, workdir="/workspace",
                timeout=_modal_seconds(limits.run_timeout + margin),
                idle_timeout=_modal_seconds(limits.idle_timeout + margin),
                # (request, limit): a bare number is only a request, which Modal lets a sandbox exceed.
                cpu=(limits.cpu, limits.cpu), memory=(int(limits.memory_mb), int(limits.memory_mb)),
                tags={JOB_TAG: spec.job_id, OWNER_TAG: self.config.owner, PROCESS_TAG: this_process()},
                **network)

        sandbox = self._retrying(create, monitor, "create the sandbox")
        if monitor.should_stop():
            self._terminate(sandbox, monitor)
            return None
        monitor.status("running", f"Modal sandbox {sandbox.object_id} started")
        return sandbox

    @staticmethod
    def _end_job_sandboxes(app: modal.App, job_id: str) -> None:
        try:
            for sandbox in modal.Sandbox.list(app_id=app.app_id, tags={JOB_TAG: job_id}):
                sandbox.terminate()
        except (mexc.Error, OSError):
            pass  # best effort: Modal's own timeout ends anything missed

    def _retrying(self, call, monitor: RunMonitor | None, what: str):
        """`call()` retried with exponential backoff on transient errors only."""
        delay = self.config.retry_delay
        for attempt in range(1, self.config.create_attempts + 1):
            try:
                return call()
            except TRANSIENT_ERRORS as exc:
                if attempt == self.config.create_attempts or (monitor and monitor.should_stop()):
                    raise ModalRunError(f"could not {what} after {attempt} attempts: "
                                        f"{describe_error(exc)}") from exc
                if monitor:
                    monitor.emit(ev.WARNING, {"message": f"could not {what} ({describe_error(exc)}); "
                                                         f"retrying in {delay:g}s"})
                time.sleep(delay)
                delay *= 2
            except mexc.Error as exc:
                raise ModalRunError(f"could not {what}: {describe_error(exc)}") from exc
        raise AssertionError("unreachable")

    def _supervise(self, spec: RunSpec, monitor: RunMonitor, sandbox: modal.Sandbox) -> int | None:
        # add_local_python_source puts the package in /root; say so rather than rely on the image.
        env = {**spec.env, "PYTHONPATH": "/root"}
        if spec.secrets:  # names (not values) so the agent hides them from its commands
            env["AGENT_SANDBOX_SECRET_NAMES"] = ",".join(sorted(spec.secrets))
        secrets = [modal.Secret.from_dict(dict(spec.secrets))] if spec.secrets else []
        try:
            process = sandbox.exec("python", "-m", "agent_sandbox.coding_agent", *spec.agent_args(enforced=ENFORCEMENT),
                                   bufsize=1, env=env, secrets=secrets,
                                   timeout=_modal_seconds(spec.limits.run_timeout + self.config.timeout_margin))
        except mexc.Error as exc:
            raise ModalRunError(f"could not start the agent in the sandbox: {describe_error(exc)}") from exc
        if monitor.relay is not None:   # the model relay's replies go in on the agent's stdin
            monitor.relay.attach(lambda line: (process.stdin.write(line), process.stdin.drain()))
        errors: list[BaseException] = []

        def pump(stream, name: str) -> None:
            try:
                monitor.pump(stream, name)
            except Exception as exc:  # a broken stream ends the run; say why
                errors.append(exc)

        readers = [threading.Thread(target=pump, args=(process.stdout, "stdout"), daemon=True),
                   threading.Thread(target=pump, args=(process.stderr, "stderr"), daemon=True)]
        for reader in readers:
            reader.start()
        while any(r.is_alive() for r in readers):
            if monitor.should_stop():
                self._terminate(sandbox, monitor, wait=False)
                break
            for reader in readers:   # returns early when a reader ends
                reader.join(0.025)
        for reader in readers:
            reader.join(timeout=10)
        if monitor.stopped:
            return None
        if errors and monitor.final is None:
            raise ModalRunError(f"lost the agent's output stream: {describe_error(errors[0])}")
        try:
            return process.wait()
        except mexc.Error as exc:
            # No exit status: the sandbox went away under the agent. Say who ended it.
            ended = _wait_for_end(sandbox, 10)
            if ended == 124:
                return -1
            monitor.stopped = (ev.ERROR_STATUS, "the sandbox was terminated outside this run"
                               if ended == 137 else f"lost the agent: {describe_error(exc)}")
            return None

    def _terminate(self, sandbox: modal.Sandbox, monitor: RunMonitor, wait: bool = True) -> None:
        """Stop the sandbox; with `wait`, until it has ended (its volume then is in sync)."""
        try:
            sandbox.terminate()
        except mexc.NotFoundError:
            pass
        except (mexc.Error, OSError) as exc:
            monitor.emit(ev.WARNING, {"message": f"could not terminate the sandbox: {describe_error(exc)}"})
        if not wait:
            return
        if _wait_for_end(sandbox, self.config.terminate_wait) is None:
            monitor.emit(ev.WARNING, {"message": "the sandbox did not end in time; outputs may be incomplete"})

    def _outcome(self, monitor: RunMonitor, sandbox: modal.Sandbox, exit_code: int | None) -> tuple[str, str]:
        if monitor.stopped or monitor.final is not None:
            return monitor.outcome(exit_code)
        if sandbox.returncode == 124 or exit_code == -1:  # Modal's own time limit ended it first
            return ev.TIMEOUT, "Modal ended the sandbox at its time limit"
        return monitor.outcome(exit_code)

    def _finish(self, monitor: RunMonitor, status: str, reason: str, exit_code: int | None,
                source: VolumeSource, spec: RunSpec) -> RunResult:
        monitor.status("collecting", "collecting outputs from the Modal volume")
        try:
            manifest = collect_outputs(source, spec.results, spec.limits)
        except (mexc.Error, OSError) as exc:
            manifest = collect_outputs(_EmptySource(), spec.results, spec.limits)
            monitor.emit(ev.ERROR, {"message": f"could not read the outputs: {describe_error(exc)}"})
            if status == ev.SUCCEEDED:
                status, reason = ev.ERROR_STATUS, f"could not read the outputs: {describe_error(exc)}"
        monitor.result_event(status, reason, manifest)
        return RunResult(status=status, reason=reason, exit_code=exit_code,
                         duration=monitor.duration, manifest=manifest,
                         usage=monitor.usage, summary=monitor.summary)

    @staticmethod
    def _error(monitor: RunMonitor, reason: str) -> RunResult:
        monitor.emit(ev.ERROR, {"message": reason})
        monitor.result_event(ev.ERROR_STATUS, reason, {})
        return RunResult(status=ev.ERROR_STATUS, reason=reason, duration=monitor.duration)


class _EmptySource:
    def entries(self):
        return []

    def open(self, path: str):
        raise OSError(path)


def _wait_for_end(sandbox: modal.Sandbox, timeout: float) -> int | None:
    """The sandbox's return code once it has ended; None if it has not within `timeout`."""
    ended = threading.Event()

    def wait() -> None:   # a long poll: returns as soon as the sandbox has ended
        try:
            sandbox.wait(raise_on_termination=False)
        except (mexc.Error, OSError):   # ended by its own time limit, or Modal unreachable
            pass
        finally:
            ended.set()

    threading.Thread(target=wait, daemon=True).start()
    ended.wait(timeout)
    return _poll_quietly(sandbox)


def _poll_quietly(sandbox: modal.Sandbox) -> int | None:
    try:
        return sandbox.poll()
    except (mexc.Error, OSError):
        return None


def _modal_seconds(seconds: float) -> int:
    return max(1, min(MAX_MODAL_TIMEOUT, int(seconds + 0.999)))


def describe_error(exc: BaseException) -> str:
    """A one-line, user-facing description of a Modal or connection failure."""
    kinds = [
        (mexc.ImageBuildError, "the sandbox image could not be built"),
        (mexc.AuthError, "Modal refused the credentials (check MODAL_TOKEN_ID / MODAL_TOKEN_SECRET)"),
        (mexc.ResourceExhaustedError, "Modal is out of capacity or rate limiting"),
        (mexc.NotFoundError, "not found on Modal"),
        (mexc.InvalidError, "Modal refused the request as invalid"),
        (mexc.SandboxTimeoutError, "the sandbox hit its time limit"),
        (mexc.SandboxTerminatedError, "the sandbox was terminated"),
        ((mexc.ServiceError, mexc.InternalError), "Modal had a service error"),
        ((ConnectionError, OSError, mexc.ConnectionError, StreamTerminatedError), "could not reach Modal"),
    ]
    detail = " ".join(str(exc).split())[:500] or type(exc).__name__   # one line, however Modal wraps it
    for types, text in kinds:
        if isinstance(exc, types):
            return f"{text}: {detail}"
    return f"{type(exc).__name__}: {detail}"
