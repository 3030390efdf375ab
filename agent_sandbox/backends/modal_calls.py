"""Modal calls that must not hold a run up: each bounded in time, or watched.

The client blocks its caller: an image build, a rate limit it waits out, a
sandbox that will not say it ended. The helpers here run such calls where
the run can walk away from them (`watched`, `wait_for_end`), or swallow what
cannot matter any more (`poll_quietly`, `terminate_quietly`); and
`describe_error` turns any Modal failure into one line for the user.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

import modal
import modal.exception as mexc
from grpclib.exceptions import StreamTerminatedError

from agent_sandbox.backends.monitor import POLL

if TYPE_CHECKING:
    from agent_sandbox.backends.monitor import RunMonitor


def watched(create: Callable[[], modal.Sandbox], run: RunMonitor) -> modal.Sandbox | None:
    """`create()` in a thread of its own, so that cancel and the run's limits still act
    while it waits (an image build, Modal's rate limits); None when the run stopped
    first. A sandbox that comes after all is terminated."""
    done, outcome = threading.Event(), {}
    abandoned = threading.Event()

    def work() -> None:
        try:
            outcome["sandbox"] = create()
        except BaseException as exc:   # handed to the run, unless it has moved on
            outcome["error"] = exc
        done.set()
        if abandoned.is_set() and "sandbox" in outcome:
            terminate_quietly(outcome["sandbox"])

    threading.Thread(target=work, name=f"{run.spec.job_id}-create", daemon=True).start()
    while not done.wait(POLL):
        if run.stop_requested(idle=False):   # a long build is no idleness of the agent
            abandoned.set()
            if not done.is_set():
                return None   # `work` ends what it makes
            break
    if abandoned.is_set():   # it finished as the run stopped: end it here (twice is harmless)
        if "sandbox" in outcome:
            terminate_quietly(outcome["sandbox"])
        return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["sandbox"]


def terminate_quietly(sandbox: modal.Sandbox) -> None:
    try:
        sandbox.terminate()
    except (mexc.Error, OSError):
        pass   # Modal's own timeout ends it


def wait_for_end(sandbox: modal.Sandbox, timeout: float) -> int | None:
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
    return poll_quietly(sandbox)


def poll_quietly(sandbox: modal.Sandbox) -> int | None:
    try:
        return sandbox.poll()
    except (mexc.Error, OSError):
        return None


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
