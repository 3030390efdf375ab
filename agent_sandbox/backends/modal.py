from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import modal
import modal.exception as mexc

from agent_sandbox.backends import modal_image
from agent_sandbox.backends.contract import Backend, EventCallback, Sandbox
from agent_sandbox.backends.modal_calls import (
    JOB_TAG,
    MODAL_ERRORS,
    OWNER_TAG,
    PROCESS_TAG,
    TRANSIENT_ERRORS,
    describe_error,
    wait_for_end,
)
from agent_sandbox.backends.modal_config import ModalConfig, ModalEnvironment
from agent_sandbox.backends.modal_run import modal_seconds
from agent_sandbox.backends.modal_runner import ModalRunner
from agent_sandbox.isolation import netjail
from agent_sandbox.isolation.owners import process_alive, this_process
from agent_sandbox.spec import RunResult, RunSpec

END_BY_ID_WAIT = 10.0     # seconds end_sandbox waits for a terminated sandbox to have ended
# What holds each sandbox limit on Modal (reported in run_started): Modal takes no process
# count or disk size for Sandboxes, and past its memory limit it ends the whole sandbox.
ENFORCEMENT = {
    "memory_mb": "Modal's hard memory limit for the sandbox; each command capped below it by the agent",
    "cpu": "Modal's CPU limit",
    "max_processes": "the agent: commands run as an unprivileged user with RLIMIT_NPROC",
    "disk_mb": "the agent: RLIMIT_FSIZE and a watchdog over /tmp, /outputs and the workspace",
}
log = logging.getLogger(__name__)
_apps: dict[tuple[str, str], asyncio.Future] = {}   # looked up once per process, on the runner's loop


class ModalBackend(Backend):
    name = "modal"
    enforcement = ENFORCEMENT

    def __init__(self, **config: Any):
        self.config = ModalConfig.from_env(**config)
        # Unset, the client waits out rate limits without end, deaf to cancel and timeouts.
        if modal.config.config.get("max_throttle_wait") is None:
            modal.config.config.override_locally("max_throttle_wait", str(self.config.max_throttle_wait))

    @property
    def runner(self) -> ModalRunner:
        return ModalRunner.shared(self.config)

    def run(self, spec: RunSpec, on_event: EventCallback, cancel=None) -> RunResult:
        return self.submit(spec, on_event, cancel).result()

    def sandbox(self, spec: RunSpec) -> Sandbox:
        """Not the threaded lifecycle (`contract.drive`): a Modal run is a coroutine on the runner."""
        raise NotImplementedError("Modal runs go through ModalBackend.run or submit (modal_run.py)")

    def submit(self, spec: RunSpec, on_event: EventCallback, cancel=None):
        """Start the run on the process's Modal runner without holding a thread for it;
        a concurrent.futures.Future of its RunResult, set once every event was delivered."""
        return self.runner.submit(self, spec, on_event, cancel)

    def prepare(self) -> str:
        """At start-up: build (or look up) the image once, its build log in our log; its id."""
        delay = self.config.retry_delay
        for attempt in range(1, self.config.create_attempts + 1):
            try:
                app = modal.App.lookup(self.config.app_name, create_if_missing=True, **self.env_kwargs())
                break
            except TRANSIENT_ERRORS:
                if attempt == self.config.create_attempts:
                    raise
                time.sleep(delay)
                delay *= 2
        return modal_image.build(self.config, app)

    async def lookup_app(self) -> modal.App:
        """The app, looked up once per process (every job runs under it; a failed lookup is tried again)."""
        key = (self.config.app_name, self.config.environment)
        if key not in _apps or _apps[key].done() and _apps[key].exception() is not None:
            _apps[key] = asyncio.ensure_future(modal.App.lookup.aio(self.config.app_name, create_if_missing=True,
                                                                    **self.env_kwargs()))
        return await asyncio.shield(_apps[key])

    def sweep_orphans(self) -> int:
        """Terminate this owner's sandboxes whose starting process is gone (it crashed).

        Sandboxes of live processes on this host (a CLI run, another web app)
        are left alone. Modal being unreachable is logged, not raised: it must
        not stop a web app.
        """
        return self.runner.call(self._sweep_orphans())

    async def _sweep_orphans(self) -> int:
        swept = 0
        try:
            app = await modal.App.lookup.aio(self.config.app_name, **self.env_kwargs())
            async for sandbox in modal.Sandbox.list.aio(app_id=app.app_id, tags={OWNER_TAG: self.config.owner}):
                if process_alive((await sandbox.get_tags.aio()).get(PROCESS_TAG, "")):
                    continue
                await sandbox.terminate.aio()
                swept += 1
        except mexc.NotFoundError:
            pass  # no app yet: nothing can be left over
        except MODAL_ERRORS as exc:
            log.warning("orphan sweep incomplete (%d terminated): %s", swept, describe_error(exc))
        return swept

    def end_sandbox(self, sandbox_id: str) -> bool:
        """Terminate a sandbox by its id (stored with its job), without listing: Modal's
        Sandbox.list() does not return V2 sandboxes. Unreachable Modal is logged, not raised."""
        return self.runner.call(self._end_sandbox(sandbox_id))

    async def _end_sandbox(self, sandbox_id: str) -> bool:
        try:
            sandbox = await modal.Sandbox.from_id.aio(sandbox_id)
            if await sandbox.poll.aio() is not None:
                return False
            await sandbox.terminate.aio()
            # Terminate returns at once; the caller (stop, recovery) says no sandbox runs any more.
            if await wait_for_end(sandbox, END_BY_ID_WAIT) is None:
                log.warning("sandbox %s did not end within %g s of its terminate", sandbox_id, END_BY_ID_WAIT)
            return True
        except mexc.NotFoundError:
            return False
        except MODAL_ERRORS as exc:
            log.warning("could not end sandbox %s: %s", sandbox_id, describe_error(exc))
            return False

    def env_kwargs(self) -> ModalEnvironment:
        return {"environment_name": self.config.environment} if self.config.environment else {}

    async def create_sandbox(self, spec: RunSpec, app: modal.App, image: modal.Image,
                             volume: modal.Volume) -> modal.Sandbox:
        limits, margin = spec.limits, self.config.timeout_margin
        return await modal.Sandbox.create.aio(
            app=app, image=image, volumes={"/outputs": volume}, workdir="/workspace",
            timeout=modal_seconds(limits.run_timeout + margin),
            idle_timeout=modal_seconds(limits.idle_timeout + margin),
            # (request, limit): a bare number is only a request, which Modal lets a sandbox exceed.
            cpu=(limits.cpu, limits.cpu), memory=(int(limits.memory_mb), int(limits.memory_mb)),
            tags={JOB_TAG: spec.job_id, OWNER_TAG: self.config.owner, PROCESS_TAG: this_process()},
            **self.network(spec))

    def network(self, spec: RunSpec) -> dict[str, Any]:
        """Model calls go through the relay: no network, unless the opt-in asks for it, and then
        never private ranges (Modal's own network, cloud metadata), or an explicit allowlist."""
        if not spec.needs_network:
            return {"block_network": True}
        if self.config.outbound_domains:
            return {"outbound_domain_allowlist": list(self.config.outbound_domains)}
        return {"outbound_cidr_allowlist": netjail.public_ranges()}
