"""One sandbox's lifecycle, as Modal runs it.

A sandbox starts with its image's mounts materialised in a private folder and
private copies of its volumes; `exec` runs commands in the jail (jail.py).
It is scheduled `schedule_delay` seconds after its creation (Modal answers
create before it has a worker: no task id meanwhile, and an exec waits). It
ends at most once, by terminate, its lifetime timeout, its idle timeout, its
entrypoint exiting or memory: a process killed for memory ends the whole
sandbox, as gVisor does on Modal. Every process is killed, the volumes are
committed (volumes.commit), then the result is published, so `wait`
returning means the volumes are in sync; unless `commit_delay` is set, and
then the commit comes that long after the result (Modal syncs a v2 volume at
termination "with no promise of timing"). After that, exec fails with
NOT_FOUND, as on Modal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from modal_proto import api_pb2

from agent_sandbox.isolation.scratch import RunSpace
from modal_emulator import volumes as volumes_mod
from modal_emulator.faults import SKIPPED_COMMIT, FaultInjector
from modal_emulator.jail import JailLayout, kill_group

log = logging.getLogger("modal_emulator")

STATUS = api_pb2.GenericResult
STDOUT, STDERR = 1, 2
IDLE_CHECK_SECONDS = 1.0
MEMORY_CHECK_SECONDS = 0.25
OOM_EXIT_CODE = 137   # what the sandbox's processes got: SIGKILL


class Runtime(Protocol):
    """Where a sandbox's processes run (jail.BwrapRuntime, docker_runtime.DockerRuntime)."""

    name: str

    async def start(self, env: dict[str, str]) -> None: ...

    async def spawn(self, exec_id: str, args: list[str], workdir: str, env: dict[str, str],
                    stdout: bool, stderr: bool) -> asyncio.subprocess.Process: ...

    async def kill(self, exec_id: str, process: asyncio.subprocess.Process) -> None: ...

    async def stop(self) -> None:
        """Kill every process of the sandbox."""

    async def release(self) -> None:
        """Free what the runtime holds once the sandbox's processes are gone."""

    def oom_kills(self) -> int:
        """Processes of the sandbox the kernel killed for memory so far (0 where nobody counts)."""


class StdinError(Exception):
    """A stdin write that does not fit what was written before."""


class SandboxFinished(Exception):
    """The sandbox is no longer running; its processes cannot be reached."""


class Exec:
    """One command running in the sandbox, with its output kept for readers."""

    def __init__(self, exec_id: str, process: asyncio.subprocess.Process, runtime: Runtime):
        self.exec_id = exec_id
        self.process = process
        self.runtime = runtime
        self.output = {STDOUT: bytearray(), STDERR: bytearray()}
        self.changed = asyncio.Condition()
        self.done = False
        self.returncode: int | None = None
        self.killed_by_sandbox_end = False
        self.task: asyncio.Task | None = None
        self.stdin_written = 0              # bytes of stdin accepted so far (the resume offset)
        self.stdin_closed = False
        self._stdin_lock = asyncio.Lock()

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        """Modal's exec stdin: writes carry their offset, so a retried write is taken once.

        Bytes before `stdin_written` were already accepted and are skipped; a write
        that would leave a gap is refused. A second EOF is ignored; data after EOF
        is refused. A process that has exited drops what it is sent, as a pipe would.
        """
        async with self._stdin_lock:
            if offset > self.stdin_written:
                raise StdinError(f"stdin write at offset {offset} leaves a gap after {self.stdin_written} bytes")
            data = data[self.stdin_written - offset:]
            if data and self.stdin_closed:
                raise StdinError("stdin is closed")
            self.stdin_written += len(data)
            pipe = self.process.stdin
            if pipe is None:
                return
            try:
                if data:
                    pipe.write(data)
                    await pipe.drain()
                if eof and not self.stdin_closed:
                    pipe.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
            if eof:
                self.stdin_closed = True

    async def run(self, timeout: float | None) -> None:
        pumps = [asyncio.create_task(self._pump(self.process.stdout, STDOUT)),
                 asyncio.create_task(self._pump(self.process.stderr, STDERR))]
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:   # the exec's own timeout: kill its whole process tree
            await self.runtime.kill(self.exec_id, self.process)
            await self.process.wait()
        await asyncio.gather(*pumps)
        async with self.changed:
            self.returncode = self.process.returncode
            self.done = True
            self.changed.notify_all()

    async def _pump(self, stream: asyncio.StreamReader | None, fd: int) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            async with self.changed:
                self.output[fd] += chunk
                self.changed.notify_all()

    async def mark_ended_with_sandbox(self) -> None:
        """The sandbox is ending under this exec: wake its readers (they may fail now)."""
        async with self.changed:
            self.killed_by_sandbox_end = not self.done
            self.changed.notify_all()

    def kill(self) -> None:
        """Kill the local process (the jail, or the docker CLI of a removed container)."""
        kill_group(self.process)

    async def wait(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.done)


@dataclass
class Sandbox:
    sandbox_id: str
    task_id: str
    app_id: str
    definition: api_pb2.Sandbox
    tags: dict[str, str]
    env: dict[str, str]                 # secrets and env of the sandbox, for every exec
    space: RunSpace                     # private state of this sandbox (mounts, tmp, volume copies), capped
    layout: JailLayout
    runtime: Runtime                    # runs the processes: bubblewrap jails or a Docker container
    volume_mounts: dict[str, volumes_mod.Volume]   # mount path -> volume
    faults: FaultInjector | None = None
    schedule_delay: float = 0.0         # seconds before it is scheduled (a task id, a worker)
    commit_delay: float = 0.0           # seconds its volume commit lags its end
    disk_mb: int = 0                    # its disk: no commit takes more of the host than that
    created_at: float = field(default_factory=time.time)
    execs: dict[str, Exec] = field(default_factory=dict)
    result: api_pb2.GenericResult | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _ending: bool = False
    _last_active: float = field(default_factory=time.monotonic)
    _timers: list[asyncio.Handle | asyncio.Task] = field(default_factory=list)
    _end_task: asyncio.Task | None = None   # keeps a scheduled end alive until it ran
    ended_at: float | None = None           # monotonic time the result was published
    scheduled: bool = False                 # has a worker (and so a task id the client may know)
    _boot: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return not self._ending

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.definition.timeout_secs:
            self._timers.append(loop.call_later(
                self.definition.timeout_secs, self.end_soon, STATUS.GENERIC_STATUS_TIMEOUT, 0,
                f"Sandbox timed out after {self.definition.timeout_secs}s"))
        if self.definition.idle_timeout_secs:
            self._timers.append(asyncio.create_task(self._watch_idle(self.definition.idle_timeout_secs)))
        self._timers.append(asyncio.create_task(self._watch_memory()))
        self.scheduled = not self.schedule_delay
        self._boot = asyncio.create_task(self._boot_runtime())
        if self.definition.entrypoint_args:
            self._timers.append(asyncio.create_task(self._run_entrypoint(list(self.definition.entrypoint_args))))

    async def _boot_runtime(self) -> None:
        # As on Modal, create returns before the container is up; a container that
        # fails to start ends the sandbox, and the first exec then finds it gone.
        if self.schedule_delay:
            await asyncio.sleep(self.schedule_delay)   # waiting for a worker: ended here, nothing to stop
        self.scheduled = True
        try:
            await self.runtime.start(self.image_env())
        except Exception as exc:
            log.warning("sandbox %s did not start: %s", self.sandbox_id, exc)
            await self.end(STATUS.GENERIC_STATUS_FAILURE, 1, str(exc))

    def image_env(self) -> dict[str, str]:
        """What every process sees besides the image's own variables: what Modal sets in
        every container (its docs: MODAL_CLOUD_PROVIDER, MODAL_IMAGE_ID, MODAL_REGION,
        MODAL_TASK_ID; HOME, as it runs as root), the definition's and the secrets. No
        more: code that works here only thanks to a variable Modal does not set would
        fail there (PYTHONPATH, say)."""
        env = {"HOME": "/root",
               "MODAL_TASK_ID": self.task_id, "MODAL_IMAGE_ID": self.definition.image_id,
               "MODAL_REGION": "local", "MODAL_CLOUD_PROVIDER": "CLOUD_PROVIDER_LOCAL"}
        env.update(self.definition.environment_variables.contents)
        env.update(self.env)
        return env

    async def exec(self, exec_id: str, args: list[str], *, workdir: str | None = None,
                   env: dict[str, str] | None = None, timeout: float | None = None,
                   stdout: bool = True, stderr: bool = True) -> Exec:
        if not self.running:
            raise SandboxFinished(self.sandbox_id)
        if exec_id in self.execs:  # the client retries with the same id: idempotent
            return self.execs[exec_id]
        if self._boot is not None:
            await asyncio.shield(self._boot)   # the container must be up (or known dead) first
            if not self.running:
                raise SandboxFinished(self.sandbox_id)
        try:
            process = await self.runtime.spawn(exec_id, args, workdir or self.definition.workdir or "/",
                                               env or {}, stdout, stderr)
        except SandboxFinished:
            raise
        except Exception as exc:
            if not self.running:
                raise SandboxFinished(self.sandbox_id) from exc
            raise
        ex = Exec(exec_id, process, self.runtime)
        self.execs[exec_id] = ex
        self._last_active = time.monotonic()
        ex.task = asyncio.create_task(ex.run(timeout or None))
        ex.task.add_done_callback(lambda _: self._touch())
        return ex

    def _touch(self) -> None:
        self._last_active = time.monotonic()

    def end_soon(self, status: int, exitcode: int, reason: str) -> None:
        self._end_task = asyncio.create_task(self.end(status, exitcode, reason))

    async def end(self, status: int, exitcode: int = 0, reason: str = "", commit: bool = True) -> None:
        """Stop everything, commit the volumes (unless the emulator is shutting down),
        then publish the result and remove the sandbox's folders. Idempotent."""
        if self._ending:
            await self.finished.wait()
            return
        self._ending = True
        current = asyncio.current_task()
        if self._boot is not None and not self.scheduled:
            self._boot.cancel()   # still waiting to be scheduled: nothing has started
        if self._boot is not None and self._boot is not current:
            await asyncio.gather(self._boot, return_exceptions=True)   # never stop a half-started container
        for timer in self._timers:
            if timer is not current:
                timer.cancel()
        for ex in self.execs.values():
            await ex.mark_ended_with_sandbox()
        await self.runtime.stop()
        for ex in self.execs.values():
            ex.kill()
        await asyncio.gather(*(ex.wait() for ex in self.execs.values()))
        if commit and self.faults and self.faults.take("VolumeCommit", SKIPPED_COMMIT):
            log.info("injected fault: sandbox %s ends without committing its volumes", self.sandbox_id)
            commit = False
        if commit and not self.commit_delay:
            await self._commit()
        self.result = api_pb2.GenericResult(status=status, exitcode=exitcode, exception=reason)
        self.ended_at = time.monotonic()
        self.finished.set()
        log.info("sandbox %s ended: %s %s", self.sandbox_id, STATUS.GenericStatus.Name(status), reason)
        if commit and self.commit_delay:   # the end is known before its volumes are in sync
            await asyncio.sleep(self.commit_delay)
            await self._commit()
        await self.runtime.release()
        try:
            await asyncio.to_thread(self.space.remove)
        except OSError:
            log.exception("sandbox %s: could not remove its folder %s", self.sandbox_id, self.space.folder)

    async def _commit(self) -> None:
        for mount_path, volume in self.volume_mounts.items():
            try:
                await asyncio.to_thread(volumes_mod.commit, volume, self.layout.volumes[mount_path],
                                        self.disk_mb * 1024 * 1024 if self.disk_mb else None)
            except OSError:
                log.exception("sandbox %s: could not commit volume %s", self.sandbox_id, volume.volume_id)

    async def _watch_memory(self) -> None:
        """A process killed for memory ends the whole sandbox, as on Modal (gVisor): not only
        the greedy command, but the agent and every other process with it."""
        while True:
            await asyncio.sleep(MEMORY_CHECK_SECONDS)
            if self.runtime.oom_kills():
                await self.end(STATUS.GENERIC_STATUS_KERNEL_OOM_KILL, OOM_EXIT_CODE,
                               "Sandbox ran out of memory: the kernel killed a process (OOM)")
                return

    async def _watch_idle(self, idle_timeout: int) -> None:
        # Modal's idle: no exec running (and no stdin/connection activity, not modelled).
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            busy = any(not ex.done for ex in self.execs.values())
            if busy:
                self._last_active = time.monotonic()
            elif time.monotonic() - self._last_active >= idle_timeout:
                await self.end(STATUS.GENERIC_STATUS_TIMEOUT, 0, f"Sandbox idle for {idle_timeout}s")
                return

    async def _run_entrypoint(self, args: list[str]) -> None:
        ex = await self.exec("entrypoint", args)
        await ex.wait()
        if ex.killed_by_sandbox_end:
            return
        code = ex.returncode or 0
        status = STATUS.GENERIC_STATUS_SUCCESS if code == 0 else STATUS.GENERIC_STATUS_FAILURE
        await self.end(status, code)
