"""Every Modal job of a process on ONE asyncio event loop: no thread per job.

A thread per job (and two per stream) is what one process can afford for a
few dozen sandboxes; Modal is for hundreds. So the Modal backend hands each
run to the process's `ModalRunner`: one event loop drives every job's
creation, exec, output streams (as bytes), termination and volume listing on
the client's `.aio` API (`ModalRun`, modal_run.py). That loop is the client's
own (synchronicity's, in its one thread): an `.aio` call made from another
loop hops to it and back through a thread-safe queue, once per call and per
chunk of output; made on it, it is a plain await (measured: about half the
CPU of a streamed event). Besides it, a fixed handful of threads whatever the
number of jobs:

- one ticker task (not a thread) checks every job's cancel flag and limits
  every TICK seconds, instead of a timer per job;
- `delivery`: events are handed to each job's `on_event` (which stores them:
  a database write) by one thread, in order, so a slow store never holds the
  loop; a job's result is given only after its last event;
- `downloads`: `collect_outputs` (hashing, writing files) runs in a pool of
  `download_concurrency` threads, its reads done on the loop;
- the client's small pools (it hashes each workspace in one of its own).

Creation (with the upload of the job's workspace, which the client does as
part of it) is bounded by `create_concurrency`, downloads by
`download_concurrency`: a burst of a thousand jobs becomes a queue, not a
thousand requests at once. The local and Docker backends keep their threads;
nothing here is used by them.

    runner = ModalRunner.shared()
    future = runner.submit(backend, spec, on_event, cancel)   # a concurrent.futures.Future[RunResult]
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from modal._utils.async_utils import synchronizer

from agent_sandbox.backends.contract import EventCallback
from agent_sandbox.backends.modal_config import ModalConfig
from agent_sandbox.backends.modal_run import ModalMaker, ModalRun
from agent_sandbox.spec import RunResult, RunSpec

log = logging.getLogger(__name__)
TICK = 0.2   # seconds between checks of every job's cancel flag and limits

_shared: ModalRunner | None = None
_shared_lock = threading.Lock()


class ModalRunner:
    def __init__(self, config: ModalConfig):
        self.loop = synchronizer._get_loop(start=True)   # the client's own: see above
        self.jobs: set[ModalRun] = set()
        self.downloads = concurrent.futures.ThreadPoolExecutor(config.download_concurrency,
                                                               thread_name_prefix="modal-download")
        self.create_slots = asyncio.Semaphore(config.create_concurrency)
        self._tasks: set[asyncio.Task] = set()   # ours on the loop: the ticker and the jobs
        self._deliveries: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._delivery = threading.Thread(target=self._deliver_all, name="modal-events", daemon=True)
        self._delivery.start()
        asyncio.run_coroutine_threadsafe(self._tick(), self.loop)

    @classmethod
    def shared(cls, config: ModalConfig) -> ModalRunner:
        """This process's runner (made on first use, with `config`'s concurrency settings)."""
        global _shared
        with _shared_lock:
            if _shared is None:
                _shared = cls(config)
                atexit.register(_shared.close)
            return _shared

    def close(self, timeout: float = 5.0) -> None:
        """End our tasks and the delivery thread (at exit, before the client ends its loop: a task
        left to the interpreter's end is logged from a finalizer, which can deadlock on the lock of
        a logging handler that a frozen thread holds)."""
        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._cancel_ours(), self.loop).result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
        self._deliveries.put(None)
        self._delivery.join(timeout)
        self.downloads.shutdown(wait=False, cancel_futures=True)

    # -- from any thread -------------------------------------------------------------

    def submit(self, backend: ModalMaker, spec: RunSpec, on_event: EventCallback,
               cancel: threading.Event | None = None) -> concurrent.futures.Future[RunResult]:
        """Run one job; its result once every event of it has been handed to `on_event`."""
        result: concurrent.futures.Future[RunResult] = concurrent.futures.Future()
        asyncio.run_coroutine_threadsafe(self._run(backend, spec, on_event, cancel, result), self.loop)
        return result

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run one coroutine on the loop and wait for its result (for calls outside a job)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def deliver(self, on_event: EventCallback, event: dict[str, Any]) -> None:
        self._deliveries.put(lambda: on_event(event))

    @property
    def running(self) -> int:
        return len(self.jobs)

    # -- on the loop -------------------------------------------------------------------

    async def _run(self, backend: ModalMaker, spec: RunSpec, on_event: EventCallback,
                   cancel: threading.Event | None, result: concurrent.futures.Future) -> None:

        self.own()
        try:
            job = ModalRun(self, backend, spec, on_event, cancel)
        except BaseException as exc:
            self._deliveries.put(functools.partial(result.set_exception, exc))
            return
        self.jobs.add(job)
        try:
            outcome = await job.run_async()
            self._deliveries.put(lambda: result.set_result(outcome))
        except BaseException as exc:   # a bug of ours: the caller hears of it, the loop goes on
            log.exception("Modal job %s failed", spec.job_id)
            self._deliveries.put(functools.partial(result.set_exception, exc))
        finally:
            self.jobs.discard(job)

    async def _cancel_ours(self, rounds: int = 5) -> None:
        for _ in range(rounds):   # a cancelled job may start a late clean-up of its own
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def own(self) -> None:
        """The running task is ours: ended with the runner."""
        task = asyncio.current_task()
        assert task is not None   # (called from a coroutine on the loop)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        self.own()
        while True:
            await asyncio.sleep(TICK)
            for job in list(self.jobs):
                job.check()

    # -- the delivery thread ----------------------------------------------------------

    def _deliver_all(self) -> None:
        while (deliver := self._deliveries.get()) is not None:
            try:
                deliver()
            except Exception:   # a store that refused one event must not stop everybody's
                log.exception("a Modal job's event could not be delivered")
