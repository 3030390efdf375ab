"""Modal calls that must not hold a run up, on the runner's event loop.

The client can block for long: an image build, a rate limit it waits out,
a sandbox that will not say it ended. Each helper here is bounded in time
(`wait_for_end`) or swallows what cannot matter any more (`poll_quietly`,
`terminate_quietly`); `describe_error` turns any Modal failure into one
line for the user. Everything is awaited on the `.aio` API: no thread.
"""

from __future__ import annotations

import asyncio

import modal
import modal.exception as mexc
from grpclib.exceptions import StreamTerminatedError

# The tags each of our sandboxes carries: its job, the host that made it (owner), the process.
JOB_TAG, OWNER_TAG, PROCESS_TAG = "agent_sandbox_job", "agent_sandbox_owner", "agent_sandbox_process"

# Failures worth another try: Modal busy, rate limited or briefly unreachable.
TRANSIENT_ERRORS = (mexc.ServiceError, mexc.InternalError, mexc.ResourceExhaustedError,
                    mexc.TimeoutError, mexc.ConnectionError, ConnectionError, OSError,
                    StreamTerminatedError)
# Whatever a Modal call may raise besides a bug of ours.
MODAL_ERRORS = TRANSIENT_ERRORS + (mexc.Error, asyncio.TimeoutError)


async def terminate_quietly(sandbox: modal.Sandbox) -> None:
    try:
        await sandbox.terminate.aio()
    except MODAL_ERRORS:
        pass   # Modal's own timeout ends it


async def wait_for_end(sandbox: modal.Sandbox, timeout: float) -> int | None:
    """The sandbox's return code once it has ended; None if it has not within `timeout`."""
    try:   # a long poll: returns as soon as the sandbox has ended
        await asyncio.wait_for(sandbox.wait.aio(raise_on_termination=False), timeout)
    except MODAL_ERRORS:   # not in time, ended by its own time limit, or Modal unreachable
        pass
    return await poll_quietly(sandbox)


async def poll_quietly(sandbox: modal.Sandbox) -> int | None:
    try:
        return await sandbox.poll.aio()
    except MODAL_ERRORS:
        return None


def describe_error(exc: BaseException) -> str:
    """A one-line, user-facing description of a Modal or connection failure."""
    kinds: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        (mexc.ImageBuildError, "the sandbox image could not be built"),
        (mexc.AuthError, "Modal refused the credentials (check MODAL_TOKEN_ID / MODAL_TOKEN_SECRET)"),
        (mexc.ResourceExhaustedError, "Modal is out of capacity or rate limiting"),
        (mexc.NotFoundError, "not found on Modal"),
        (mexc.InvalidError, "Modal refused the request as invalid"),
        (mexc.SandboxTimeoutError, "the sandbox hit its time limit"),
        (mexc.SandboxTerminatedError, "the sandbox was terminated"),
        ((mexc.ServiceError, mexc.InternalError), "Modal had a service error"),
        (asyncio.TimeoutError, "Modal did not answer in time"),
        ((ConnectionError, OSError, mexc.ConnectionError, StreamTerminatedError), "could not reach Modal"),
    ]
    detail = " ".join(str(exc).split())[:500] or type(exc).__name__   # one line, however Modal wraps it
    for types, text in kinds:
        if isinstance(exc, types):
            return f"{text}: {detail}"
    return f"{type(exc).__name__}: {detail}"
