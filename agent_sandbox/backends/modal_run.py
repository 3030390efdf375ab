"""One Modal run as a coroutine on the runner's loop (modal_runner.py).

It is `RunMonitor.run`, step for step, on the client's `.aio` API: the same
events, limits, outcome and finish (inherited), with the waits awaited
instead of held by threads:

- create: an ephemeral v2 volume at /outputs, the app, the shared image, the
  sandbox with the job's workspace uploaded; retried with backoff on transient errors
  only. Each step races the run's stop (cancel, the run timeout): a stop
  abandons the wait, and a sandbox that comes after all is terminated;
- start: the agent's exec, raced the same way, since Modal answers an exec
  only once the sandbox is scheduled, which may take long;
- supervise: the exec's stdout and stderr read as bytes and cut into lines
  here (MAX_LINE, `errors="replace"`: a bad byte costs one character, a long
  line at most MAX_LINE bytes); the secrets and the relay's replies written
  to its stdin; a stop terminates the sandbox;
- end: terminate and wait (Modal syncs the volume at termination); then the
  listing is taken once settled (modal_volume.py) and `collect_outputs` runs
  in a download thread.

The runner's ticker (not this run) checks the limits and sets `stop_due`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any, Protocol

import modal
import modal.exception as mexc

from agent_sandbox.backends import modal_image
from agent_sandbox.backends.contract import (
    MAX_LINE,
    EventCallback,
    RunMonitor,
    SandboxError,
    SandboxLost,
    agent_command,
    finish,
)
from agent_sandbox.backends.modal_calls import (
    JOB_TAG,
    MODAL_ERRORS,
    TRANSIENT_ERRORS,
    describe_error,
    poll_quietly,
    terminate_quietly,
    wait_for_end,
)
from agent_sandbox.backends.modal_config import ModalConfig, ModalEnvironment
from agent_sandbox.backends.modal_volume import VolumeSource, settled_listing
from agent_sandbox.events import Status
from agent_sandbox.spec import RunResult, RunSpec


class ModalMaker(Protocol):
    """What a run asks of its backend (modal.ModalBackend), named here so that this module
    need not import the backend that starts it."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> ModalConfig: ...
    @property
    def enforcement(self) -> dict[str, str]: ...
    def env_kwargs(self) -> ModalEnvironment: ...
    async def lookup_app(self) -> modal.App: ...
    async def create_sandbox(self, spec: RunSpec, app: modal.App, image: modal.Image,
                             volume: modal.Volume) -> modal.Sandbox: ...


class RunnerLink(Protocol):
    """What a run asks of the runner it runs on (modal_runner.ModalRunner)."""

    loop: asyncio.AbstractEventLoop
    create_slots: asyncio.Semaphore
    downloads: concurrent.futures.ThreadPoolExecutor

    def deliver(self, on_event: EventCallback, event: dict[str, Any]) -> None: ...
    def own(self) -> None: ...

VOLUME_VERSION = 2        # VolumeFS v2 (the client passes it as api_pb2.VOLUME_FS_VERSION_V2 == 2)
MAX_MODAL_TIMEOUT = 24 * 3600
EXIT_STATUS_WAIT = 30.0   # seconds the agent's exit status may take once its output has ended
EXIT_STATUS_POLL = 0.05
READER_GRACE = 10.0       # seconds the streams may take to end once the sandbox was told to stop
CREATING, STARTING, RUNNING, ENDING = "creating", "starting", "running", "ending"


class ModalRun(RunMonitor):
    """One run: a Modal Sandbox with an ephemeral volume at /outputs, the agent as its exec."""

    def __init__(self, runner: RunnerLink, backend: ModalMaker, spec, on_event, cancel):
        super().__init__(spec, on_event, cancel, backend.name)
        self.runner, self.modal, self.config = runner, backend, backend.config
        self.phase = CREATING
        self.stop_due = asyncio.Event()        # set by the runner's ticker: cancel or a limit
        self.resources = AsyncExitStack()
        self.volume: modal.Volume | None = None
        self.sandbox: modal.Sandbox | None = None
        self.process: Any = None
        self.creating: asyncio.Future | None = None
        self.stopped_sandbox = self.ended = self.exec_timed_out = False
        self.ended_code: int | None = None     # the sandbox's return code if it ended before we ended it
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.stdin_open = False

    # -- what the ticker and other threads call ------------------------------------

    def check(self) -> None:
        """From the runner's ticker: stop the run when cancel or one of its limits says so."""
        if self.stop_due.is_set() or self.phase == ENDING:
            return
        if why := self.stop_requested(idle=self.phase == RUNNING):   # a long creation is no idleness
            self.stop(*why)
            self.stop_due.set()

    def forward(self, event: dict[str, Any]) -> None:
        self.runner.deliver(self.on_event, event)   # stored in order, off the event loop

    def send(self, line: str) -> bool:
        """A line for the agent's stdin, from the loop or the relay's threads."""
        if not self.stdin_open:
            return False
        self.runner.loop.call_soon_threadsafe(self.stdin.put_nowait, line.encode() + b"\n")
        return True

    def close_input(self) -> None:
        if self.stdin_open:
            self.stdin_open = False
            self.runner.loop.call_soon_threadsafe(self.stdin.put_nowait, None)

    # -- the lifecycle ------------------------------------------------------------------

    async def run_async(self) -> RunResult:
        if not self.spec.workspace.is_dir():
            return self.fail(f"workspace {self.spec.workspace} does not exist")
        if self.relay is not None and (problem := self.relay.access.problem()):
            return self.fail(problem)   # a missing key or a malformed endpoint: before any sandbox
        try:
            try:
                await self.create()
                self.last_output = time.monotonic()   # idleness counts from when the agent starts
                if self.sandbox is not None and not self.stop_due.is_set():
                    await self.start()
            except SandboxError as exc:
                return self.fail(str(exc))
            except MODAL_ERRORS as exc:
                return self.fail(describe_error(exc))
            exit_code = await self.supervise() if self.process is not None else None
            self.phase = ENDING
            await self.end()
            status, reason = self.outcome(exit_code, self.why_ended())
            return await self.outputs_back(status, reason, exit_code)
        finally:
            self.phase = ENDING
            await self.close()

    async def create(self) -> None:
        self.status(Status.STARTING, f"preparing the Modal sandbox (app {self.config.app_name})")
        self.creating = asyncio.ensure_future(self.make_sandbox())
        if await self.stopped_first(self.creating):
            return   # `close` ends what comes after the run gave up
        self.sandbox = self.creating.result()
        self.status(Status.RUNNING, f"Modal sandbox {self.sandbox.object_id} started",
                    sandbox_id=self.sandbox.object_id)

    async def make_sandbox(self) -> modal.Sandbox:
        # v2 explicitly: Modal's default is still v1, which this code is not tested against.
        ephemeral = modal.Volume.ephemeral(version=VOLUME_VERSION, **self.modal.env_kwargs())
        self.volume = volume = await self.resources.enter_async_context(ephemeral)
        app = await self.retrying(self.modal.lookup_app, "look up the app")
        image_id = await self.retrying(lambda: modal_image.built_image_id(self.config, app), "build the image")
        # The job's workspace goes up as the sandbox is created: loading the image a second
        # time (a build of its own) would hash and check every file twice.
        image = modal_image.job_image(self.config, self.spec, image_id)
        attempts = 0

        async def create() -> modal.Sandbox:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # a lost reply may hide a sandbox that was created after all
                await _end_job_sandboxes(app, self.spec.job_id)
            return await self.modal.create_sandbox(self.spec, app, image, volume)

        async with self.runner.create_slots:
            return await self.retrying(create, "create the sandbox")

    async def retrying(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        """`call()` retried with exponential backoff on transient errors only, until the run stops."""
        delay, attempts = self.config.retry_delay, self.config.create_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except TRANSIENT_ERRORS as exc:
                if attempt == attempts or self.stop_due.is_set():
                    raise SandboxError(f"could not {what} after {attempt} attempts: "
                                       f"{describe_error(exc)}") from exc
                self.warn(f"could not {what} ({describe_error(exc)}); retrying in {delay:g}s")
                await asyncio.sleep(delay)
                delay *= 2
            except mexc.Error as exc:
                raise SandboxError(f"could not {what}: {describe_error(exc)}") from exc
        raise AssertionError("unreachable")

    async def start(self) -> None:
        """Exec the agent; Modal answers once the sandbox is scheduled, so the run's stop races it."""
        self.phase = STARTING
        spec = self.spec
        assert self.sandbox is not None   # (run_async starts only a created sandbox)
        # add_local_python_source puts the package in /root: the agent starts from it, isolated.
        args = [*spec.agent_args(enforced=self.modal.enforcement), "--hold-limits", "--secrets-from-stdin"]
        starting = asyncio.ensure_future(self.sandbox.exec.aio(
            *agent_command("python", "/root", args), workdir="/", text=False, env=dict(spec.env),
            timeout=modal_seconds(spec.limits.run_timeout + self.config.timeout_margin)))
        if await self.stopped_first(starting):
            starting.cancel()   # the sandbox itself is terminated by end()
            return
        try:
            self.process = starting.result()
        except mexc.Error as exc:
            raise SandboxError(f"could not start the agent in the sandbox: {describe_error(exc)}") from exc

    async def stopped_first(self, work: asyncio.Future) -> bool:
        """Wait for `work` or the run's stop, whichever comes first; True if the stop did."""
        stop = asyncio.ensure_future(self.stop_due.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        return not work.done()

    async def supervise(self) -> int | None:
        """Give the agent its secrets, read its streams, stop it when told; its exit code."""
        self.phase = RUNNING
        self.stdin_open = True
        writer = asyncio.ensure_future(self.write_stdin())
        self.open_input(self.process.stdin)   # the secrets, then the relay's replies (`send`, queued)
        readers = [asyncio.ensure_future(self.read(self.process.stdout, "stdout")),
                   asyncio.ensure_future(self.read(self.process.stderr, "stderr"))]
        try:
            if await self.stopped_first(asyncio.ensure_future(asyncio.wait(readers))):
                await self.stop_sandbox()
        finally:
            self.end_input()
        await asyncio.wait(readers, timeout=READER_GRACE)
        for task in (*readers, writer):
            task.cancel()
        self.streams_ended(describe_error)
        try:
            return await self.exit_status()
        except SandboxLost as exc:
            self.lost = self.lost or str(exc)
            return None

    async def read(self, stream: AsyncIterable[bytes], name: str) -> None:
        """One output stream, as bytes, into events line by line."""
        lines = LineCutter(MAX_LINE)
        try:
            async for chunk in stream:
                for line in lines.feed(chunk):
                    self.feed(line, name)
            for line in lines.end():
                self.feed(line, name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # a broken stream: `outcome` decides what it means
            self.stream_errors.append(exc)

    async def write_stdin(self) -> None:
        """The agent's stdin: the lines `send` queued, in order, then EOF."""
        stdin = self.process.stdin
        try:
            while (data := await self.stdin.get()) is not None:
                stdin.write(data)
                await stdin.drain.aio()
            stdin.write_eof()
            await stdin.drain.aio()
        except (*MODAL_ERRORS, ValueError):   # the exec has ended: as a closed pipe would
            self.stdin_open = False

    async def stop_sandbox(self) -> None:
        self.stopped_sandbox = True
        await self.terminate(wait=False)

    async def exit_status(self) -> int | None:
        """The agent's exit code; None when the sandbox ended under it (`why_ended` says how).

        Never `process.wait()`: the client retries TaskExecWait while a worker is
        unreachable, until the exec's deadline (the whole run). So: nothing to ask
        once the sandbox has ended, and otherwise polls, bounded.
        """
        assert self.sandbox is not None   # (only an agent that started has an exit status)
        if self.stopped_sandbox or await poll_quietly(self.sandbox) is not None:
            return None
        deadline = time.monotonic() + EXIT_STATUS_WAIT
        while time.monotonic() < deadline:
            try:
                code = await self.process.poll.aio()
            except MODAL_ERRORS as exc:
                # No exit status: the exec went away, most likely with its sandbox.
                if await wait_for_end(self.sandbox, max(1.0, deadline - time.monotonic())) is not None:
                    return None
                raise SandboxLost(f"lost the agent: {describe_error(exc)}") from exc
            if code == -1:   # the client's answer once the exec's own time limit (Modal's) has passed
                self.exec_timed_out = True
                await wait_for_end(self.sandbox, 2)   # most likely the sandbox's limit, which came with it
                return None
            if code is not None:
                return code
            if await poll_quietly(self.sandbox) is not None:
                return None
            await asyncio.sleep(EXIT_STATUS_POLL)
        raise SandboxLost(f"the agent's output ended but its exit status did not come back "
                          f"within {EXIT_STATUS_WAIT:g}s")

    async def end(self) -> None:
        """Terminate and wait until it has ended: Modal syncs the volume at termination."""
        if self.sandbox is not None and not self.ended:
            self.ended = True
            if not self.stopped_sandbox:   # did it end by itself (its time limit, someone else)?
                self.ended_code = await poll_quietly(self.sandbox)
            await self.terminate(wait=True)

    def why_ended(self) -> tuple[str, str] | None:
        """How the sandbox ended, if it did before this run ended it (Modal's return codes)."""
        code = self.ended_code
        if code is None:
            return (Status.TIMEOUT, "Modal ended the agent's command at its time limit") if self.exec_timed_out else None
        if code == 124:
            return Status.TIMEOUT, "Modal ended the sandbox at its time limit"
        if code == 137:
            return Status.ERROR, ("the sandbox was terminated outside this run (by someone else, or by "
                                  "Modal when it ran out of memory)")
        return Status.ERROR, f"the sandbox ended under the agent (return code {code})"

    async def outputs_back(self, status: str, reason: str, exit_code: int | None) -> RunResult:
        """The outputs once the volume is in sync, downloaded in a download thread."""
        outputs: Any = _Unlisted(None)   # no sandbox ever ran: nothing to bring back
        if self.sandbox is not None:
            assert self.volume is not None   # (made before the sandbox)
            try:
                listing = await settled_listing(self.volume, (self.final or {}).get("output_files"),
                                                self.config.sync_wait, self.config.sync_settle)
                outputs = VolumeSource(self.volume, listing, self.runner.loop)
            except MODAL_ERRORS as exc:
                outputs = _Unlisted(exc)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.runner.downloads, finish, _Outputs(outputs), self,
                                          status, reason, exit_code)

    async def close(self) -> None:
        if self.creating is not None and not self.creating.done():   # abandoned: ended once it comes
            self.creating.add_done_callback(lambda _: asyncio.ensure_future(self.close_late()))
            return
        try:
            await self.end()
            await self.resources.aclose()   # the ephemeral volume goes away
        except MODAL_ERRORS as exc:   # the run has its result: say so, do not undo it
            self.warn(f"could not clean up the sandbox: {describe_error(exc)}")

    async def close_late(self) -> None:
        """A creation the run gave up on has come (or failed): end its sandbox, drop its volume."""
        self.runner.own()
        assert self.creating is not None   # (`close` waits only for a creation)
        if not self.creating.cancelled() and self.creating.exception() is None:
            await terminate_quietly(self.creating.result())
        try:
            await self.resources.aclose()
        except MODAL_ERRORS:
            pass   # an ephemeral volume nobody heartbeats goes away by itself

    async def terminate(self, wait: bool) -> None:
        """Stop the sandbox; with `wait`, until it has ended (its volume then is in sync)."""
        assert self.sandbox is not None   # (called only once it was created)
        try:
            await self.sandbox.terminate.aio()
        except mexc.NotFoundError:
            pass
        except MODAL_ERRORS as exc:
            self.warn(f"could not terminate the sandbox: {describe_error(exc)}")
        if wait and await wait_for_end(self.sandbox, self.config.terminate_wait) is None:
            self.warn("the sandbox did not end in time; outputs may be incomplete")


class LineCutter:
    """Bytes as they come, cut into lines; of a line longer than `limit`, its first `limit` bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.partial = bytearray()
        self.skipping = False   # past the cap of the current line: drop until its end

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        start = 0
        while (cut := chunk.find(b"\n", start)) >= 0:
            yield from self._take(chunk[start:cut + 1], whole=True)
            start = cut + 1
        yield from self._take(chunk[start:], whole=False)

    def end(self) -> Iterator[bytes]:
        if self.partial and not self.skipping:
            yield bytes(self.partial)
        self.partial.clear()

    def _take(self, piece: bytes, whole: bool) -> Iterator[bytes]:
        if not self.skipping:
            room = self.limit - len(self.partial)
            self.partial += piece[:room]
            if len(piece) > room:   # the cap: keep what fits, drop the rest of this line
                yield bytes(self.partial)
                self.partial.clear()
                self.skipping = True
            elif whole:
                yield bytes(self.partial)
                self.partial.clear()
        if whole:
            self.skipping = False


class _Outputs:
    """What contract.finish asks of a sandbox: its outputs, its errors, how to say them."""

    errors = MODAL_ERRORS

    def __init__(self, source: Any):
        self.source = source

    def outputs(self) -> Any:
        return self.source

    def describe(self, exc: BaseException) -> str:
        return describe_error(exc)


class _Unlisted:
    """Outputs whose listing failed (`finish` reports it as any unreadable outputs), or none at all."""

    def __init__(self, exc: BaseException | None):
        self.exc = exc

    def entries(self) -> list:
        if self.exc is not None:
            raise self.exc
        return []

    def open(self, path: str):
        raise OSError(path)


async def _end_job_sandboxes(app: modal.App, job_id: str) -> None:
    try:
        async for sandbox in modal.Sandbox.list.aio(app_id=app.app_id, tags={JOB_TAG: job_id}):
            await terminate_quietly(sandbox)
    except MODAL_ERRORS:
        pass  # best effort: Modal's own timeout ends anything missed


def modal_seconds(seconds: float) -> int:
    return max(1, min(MAX_MODAL_TIMEOUT, int(seconds + 0.999)))
