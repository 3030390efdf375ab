"""The Modal backend: the agent in a Modal Sandbox.

One run: open an ephemeral v2 volume at /outputs; look up the app and create
the sandbox from the image (modal_image.py: built once per process, at
start-up by `prepare`) plus this job's workspace, in a thread the run watches
so cancel and its limits act while Modal builds or throttles (modal_calls.py),
retried with backoff on transient errors only; exec the agent with
line-buffered output streamed into events; then terminate, wait (Modal syncs
the volume at termination) and bring the outputs back through the shared
`collect_outputs`. When the output stream breaks or the exit status does not
come, the sandbox says how it ended (`why_ended`). The volume goes away with
its context.

The agent's stdin is the exec's (Modal's exec stdin), as on the other
backends: its first line holds the secrets (never in the image, an
environment, events or logs), and the model relay's replies follow; model
keys never leave the host. The sandbox's id is reported as soon as it exists
(status event "sandbox_id"), stored with the job, and `end_sandbox(id)` ends
it through `Sandbox.from_id` when its starter died. Sandboxes are also tagged
with the job id and an owner, so `sweep_orphans` finds by listing those whose
id was never stored (a fallback: Modal does not list V2 sandboxes).

Credentials and the server come from Modal's usual config (MODAL_TOKEN_ID,
MODAL_TOKEN_SECRET, MODAL_SERVER_URL, ~/.modal.toml); our settings come from
AGENT_SANDBOX_MODAL_* variables (see ModalConfig).
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import modal
import modal.exception as mexc
from grpclib.exceptions import StreamTerminatedError

from agent_sandbox import events as ev
from agent_sandbox import settings
from agent_sandbox.isolation import netjail
from agent_sandbox.isolation.owners import process_alive, this_process
from agent_sandbox.backends.contract import (Backend, RunMonitor, Sandbox, SandboxError, SandboxLost, Streams,
                                             agent_command)
from agent_sandbox.events import Status
from agent_sandbox.backends import modal_image
from agent_sandbox.backends.modal_calls import describe_error, poll_quietly, wait_for_end, watched
from agent_sandbox.backends.modal_volume import VolumeSource
from agent_sandbox.settings import setting
from agent_sandbox.spec import RunSpec

JOB_TAG, OWNER_TAG, PROCESS_TAG = "agent_sandbox_job", "agent_sandbox_owner", "agent_sandbox_process"
MAX_MODAL_TIMEOUT = 24 * 3600
VOLUME_VERSION = 2        # VolumeFS v2 (the client passes it as api_pb2.VOLUME_FS_VERSION_V2 == 2)
EXIT_STATUS_WAIT = 30.0   # seconds the agent's exit status may take once its output has ended
EXIT_STATUS_POLL = 0.05
END_BY_ID_WAIT = 10.0     # seconds end_sandbox waits for a terminated sandbox to have ended
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


@dataclass
class ModalConfig:
    """Settings of the Modal backend: each reads AGENT_SANDBOX_MODAL_<FIELD>."""

    app_name: str = setting("AGENT_SANDBOX_MODAL_APP_NAME", "sandbox-environment",
                            "Modal app the sandboxes run under")
    environment: str = setting("AGENT_SANDBOX_MODAL_ENVIRONMENT", "", "Modal environment",
                               shown="client default")
    python_version: str = setting("AGENT_SANDBOX_MODAL_PYTHON_VERSION",
                                  f"{sys.version_info.major}.{sys.version_info.minor}",
                                  "Python of the image", shown="host's (3.11)")
    extra_packages: list[str] = setting("AGENT_SANDBOX_MODAL_EXTRA_PACKAGES", [],
                                        "extra pip packages (comma or space separated)", shown="none")
    outbound_domains: list[str] = setting("AGENT_SANDBOX_MODAL_OUTBOUND_DOMAINS", [],
                                          "domain allowlist when the opt-in network is on (without it: "
                                          "every public IPv4 range, no private ones)",
                                          shown="none (public ranges)")
    timeout_margin: float = setting("AGENT_SANDBOX_MODAL_TIMEOUT_MARGIN", 60.0,
                                    "seconds Modal's own limits exceed ours, so ours fire first")
    create_attempts: int = setting("AGENT_SANDBOX_MODAL_CREATE_ATTEMPTS", 4,
                                   "tries to create the sandbox on transient errors")
    retry_delay: float = setting("AGENT_SANDBOX_MODAL_RETRY_DELAY", 1.0,
                                 "first backoff in seconds, doubling")
    terminate_wait: float = setting("AGENT_SANDBOX_MODAL_TERMINATE_WAIT", 60.0,
                                    "seconds to wait for the sandbox (and volume sync) to end")
    owner: str = setting("AGENT_SANDBOX_MODAL_OWNER", factory=socket.gethostname, shown="hostname",
                         doc="owner tag; `sweep_orphans()` only touches its own sandboxes")
    max_throttle_wait: int = setting("AGENT_SANDBOX_MODAL_MAX_THROTTLE_WAIT", 60,
                                     "seconds the client may wait out Modal's rate limits in one call before "
                                     "it gives up and our retries take over (sets `MODAL_MAX_THROTTLE_WAIT` "
                                     "unless that is set)")

    @classmethod
    def from_env(cls, **overrides: Any) -> "ModalConfig":
        return settings.load(cls, **overrides)


class ExecStdin:
    """A Modal exec's stdin as the binary pipe the monitor writes lines to."""

    def __init__(self, process: Any):
        self.process = process

    def write(self, data: bytes) -> None:
        self.process.stdin.write(data)

    def flush(self) -> None:
        try:
            self.process.stdin.drain()
        except (mexc.Error, OSError) as exc:   # the exec has ended: as a closed pipe would
            raise OSError(str(exc)) from exc

    def close(self) -> None:
        try:
            self.process.stdin.write_eof()
            self.process.stdin.drain()
        except (mexc.Error, OSError, ValueError):
            pass


class ModalBackend(Backend):
    name = "modal"

    def __init__(self, **config: Any):
        self.config = ModalConfig.from_env(**config)
        # Unset, the client waits out rate limits without end, deaf to cancel and timeouts.
        if modal.config.config.get("max_throttle_wait") is None:
            modal.config.config.override_locally("max_throttle_wait", str(self.config.max_throttle_wait))

    def prepare(self) -> str:
        """At start-up: build (or look up) the image once, its build log in our log; its id."""
        app = self.retrying(self.lookup_app, None, "look up the app")
        return modal_image.build(self.config, app)

    def lookup_app(self) -> modal.App:
        return modal.App.lookup(self.config.app_name, create_if_missing=True, **self.env_kwargs())

    def sandbox(self, spec: RunSpec) -> ModalSandbox:
        return ModalSandbox(self, spec)

    def sweep_orphans(self) -> int:
        """Terminate this owner's sandboxes whose starting process is gone (it crashed).

        Sandboxes of live processes on this host (a CLI run, another web app)
        are left alone. Modal being unreachable is logged, not raised: it must
        not stop a web app.
        """
        swept = 0
        try:
            app = modal.App.lookup(self.config.app_name, **self.env_kwargs())
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

    def end_sandbox(self, sandbox_id: str) -> bool:
        """Terminate a sandbox by its id (stored with its job), without listing: Modal's
        Sandbox.list() does not return V2 sandboxes. Unreachable Modal is logged, not raised."""
        try:
            sandbox = modal.Sandbox.from_id(sandbox_id)
            if sandbox.poll() is not None:
                return False
            sandbox.terminate()
            # Terminate returns at once; the caller (stop, recovery) says no sandbox runs any more.
            if wait_for_end(sandbox, END_BY_ID_WAIT) is None:
                log.warning("sandbox %s did not end within %g s of its terminate", sandbox_id, END_BY_ID_WAIT)
            return True
        except mexc.NotFoundError:
            return False
        except TRANSIENT_ERRORS + (mexc.Error,) as exc:
            log.warning("could not end sandbox %s: %s", sandbox_id, describe_error(exc))
            return False

    def env_kwargs(self) -> dict[str, str]:
        return {"environment_name": self.config.environment} if self.config.environment else {}

    def retrying(self, call, run: RunMonitor | None, what: str):
        """`call()` retried with exponential backoff on transient errors only."""
        delay = self.config.retry_delay
        for attempt in range(1, self.config.create_attempts + 1):
            try:
                return call()
            except TRANSIENT_ERRORS as exc:
                if attempt == self.config.create_attempts or (run and run.stop_requested(idle=False)):
                    raise SandboxError(f"could not {what} after {attempt} attempts: "
                                       f"{describe_error(exc)}") from exc
                if run:
                    run.emit(ev.WARNING, {"message": f"could not {what} ({describe_error(exc)}); "
                                                     f"retrying in {delay:g}s"})
                time.sleep(delay)
                delay *= 2
            except mexc.Error as exc:
                raise SandboxError(f"could not {what}: {describe_error(exc)}") from exc
        raise AssertionError("unreachable")

    def create_sandbox(self, spec: RunSpec, run: RunMonitor, app: modal.App, image: modal.Image,
                       volume: modal.Volume) -> modal.Sandbox:
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
                _end_job_sandboxes(app, spec.job_id)
            return modal.Sandbox.create(
                app=app, image=image, volumes={"/outputs": volume}, workdir="/workspace",
                timeout=_modal_seconds(limits.run_timeout + margin),
                idle_timeout=_modal_seconds(limits.idle_timeout + margin),
                # (request, limit): a bare number is only a request, which Modal lets a sandbox exceed.
                cpu=(limits.cpu, limits.cpu), memory=(int(limits.memory_mb), int(limits.memory_mb)),
                tags={JOB_TAG: spec.job_id, OWNER_TAG: self.config.owner, PROCESS_TAG: this_process()},
                **network)

        return self.retrying(create, run, "create the sandbox")


class ModalSandbox(Sandbox):
    """One run: a Modal Sandbox with an ephemeral volume at /outputs, the agent as its exec."""

    errors = TRANSIENT_ERRORS + (mexc.Error,)

    def __init__(self, backend: ModalBackend, spec: RunSpec):
        self.backend, self.config, self.spec = backend, backend.config, spec
        self.resources = ExitStack()
        self.run: RunMonitor | None = None
        self.volume: modal.Volume | None = None
        self.sandbox: modal.Sandbox | None = None
        self.process = None
        self.stopped = self.ended = self.exec_timed_out = False
        self.ended_code: int | None = None   # the sandbox's return code if it ended before we ended it

    def describe(self, exc: BaseException) -> str:
        return describe_error(exc)

    def create(self, run: RunMonitor) -> None:
        self.run = run
        run.status(Status.STARTING, f"preparing the Modal sandbox (app {self.config.app_name})")
        # v2 explicitly: Modal's default is still v1, which this code is not tested against.
        self.volume = self.resources.enter_context(modal.Volume.ephemeral(version=VOLUME_VERSION,
                                                                          **self.backend.env_kwargs()))

        def create() -> modal.Sandbox:
            app = self.backend.retrying(self.backend.lookup_app, run, "look up the app")
            image = modal_image.job_image(self.config, self.spec)
            return self.backend.create_sandbox(self.spec, run, app, image, self.volume)

        self.sandbox = watched(create, run)
        if self.sandbox is not None:
            run.status(Status.RUNNING, f"Modal sandbox {self.sandbox.object_id} started",
                       sandbox_id=self.sandbox.object_id)

    def start(self, run: RunMonitor) -> Streams:
        if self.sandbox is None:   # creation was abandoned (the monitor stops such a run first)
            raise SandboxError("the run stopped before its sandbox was created")
        spec = self.spec
        # add_local_python_source puts the package in /root; say so rather than rely on the image.
        env = {**spec.env, "PYTHONPATH": "/root"}
        try:
            self.process = self.sandbox.exec(
                *agent_command("python", "/root", [*spec.agent_args(enforced=ENFORCEMENT), "--secrets-from-stdin"]),
                workdir="/", bufsize=1, env=env,
                timeout=_modal_seconds(spec.limits.run_timeout + self.config.timeout_margin))
        except mexc.Error as exc:
            raise SandboxError(f"could not start the agent in the sandbox: {describe_error(exc)}") from exc
        # The exec's stdin, as on the other backends: the secrets first, then the relay's replies.
        return Streams(self.process.stdout, self.process.stderr, ExecStdin(self.process))

    def stop(self) -> None:
        self.stopped = True
        self.terminate(wait=False)

    def wait(self) -> int | None:
        """The agent's exit code; None when the sandbox ended under it (`why_ended` says how).

        Never `process.wait()`: the client retries TaskExecWait while a worker is
        unreachable, until the exec's deadline (the whole run). So: nothing to ask
        once the sandbox has ended, and otherwise polls, bounded.
        """
        if self.stopped or poll_quietly(self.sandbox) is not None:
            return None
        deadline = time.monotonic() + EXIT_STATUS_WAIT
        while time.monotonic() < deadline:
            try:
                code = self.process.poll()
            except self.errors as exc:
                # No exit status: the exec went away, most likely with its sandbox.
                if wait_for_end(self.sandbox, max(1.0, deadline - time.monotonic())) is not None:
                    return None
                raise SandboxLost(f"lost the agent: {describe_error(exc)}") from exc
            if code == -1:   # the client's answer once the exec's own time limit (Modal's) has passed
                self.exec_timed_out = True
                wait_for_end(self.sandbox, 2)   # most likely the sandbox's limit, which came with it
                return None
            if code is not None:
                return code
            if poll_quietly(self.sandbox) is not None:
                return None
            time.sleep(EXIT_STATUS_POLL)
        raise SandboxLost(f"the agent's output ended but its exit status did not come back "
                          f"within {EXIT_STATUS_WAIT:g}s")

    def end(self) -> None:
        """Terminate and wait until it has ended: Modal syncs the volume at termination."""
        if self.sandbox is not None and not self.ended:
            self.ended = True
            if not self.stopped:   # did it end by itself (its time limit, someone else)?
                self.ended_code = poll_quietly(self.sandbox)
            self.terminate(wait=True)

    def why_ended(self) -> tuple[str, str] | None:
        """How the sandbox ended, if it did before this run ended it (Modal's return codes)."""
        code = self.ended_code
        if code is None:
            return (Status.TIMEOUT, "Modal ended the agent's command at its time limit") if self.exec_timed_out else None
        if code == 124:
            return Status.TIMEOUT, "Modal ended the sandbox at its time limit"
        if code == 137:
            return Status.ERROR, "the sandbox was terminated outside this run"
        return Status.ERROR, f"the sandbox ended under the agent (return code {code})"

    def outputs(self) -> VolumeSource:
        return VolumeSource(self.volume)

    def close(self) -> None:
        try:
            self.end()
        finally:
            self.resources.close()   # the ephemeral volume goes away

    def terminate(self, wait: bool) -> None:
        """Stop the sandbox; with `wait`, until it has ended (its volume then is in sync)."""
        try:
            self.sandbox.terminate()
        except mexc.NotFoundError:
            pass
        except (mexc.Error, OSError) as exc:
            self.run.emit(ev.WARNING, {"message": f"could not terminate the sandbox: {describe_error(exc)}"})
        if wait and wait_for_end(self.sandbox, self.config.terminate_wait) is None:
            self.run.emit(ev.WARNING, {"message": "the sandbox did not end in time; outputs may be incomplete"})


def _end_job_sandboxes(app: modal.App, job_id: str) -> None:
    try:
        for sandbox in modal.Sandbox.list(app_id=app.app_id, tags={JOB_TAG: job_id}):
            sandbox.terminate()
    except (mexc.Error, OSError):
        pass  # best effort: Modal's own timeout ends anything missed


def _modal_seconds(seconds: float) -> int:
    return max(1, min(MAX_MODAL_TIMEOUT, int(seconds + 0.999)))
