"""Inside the sandbox: the agent ends, with everything it started, once its host is gone.

The host reads the agent's stdout (a pipe) for as long as it supervises the
run. When the host process dies, however it dies (SIGKILL included), the
kernel closes its end of that pipe, and the agent's end reports POLLERR: no
reader is left. That is the one sign of the host's death that holds whoever
sits between them. Parent-death signals (bubblewrap's --die-with-parent, the
launcher's) are tied to one parent process, and a parent that dies while the
jail is still being set up leaves the agent started under a parent that is
already gone, with a signal that never comes.

So the agent watches its stdout: on POLLERR it kills every process below it
(as the child subreaper it is their parent or ancestor) and exits. In the
local jail the agent is PID 1 of its PID namespace, so its exit takes every
process of the jail with it. Elsewhere (Docker, Modal) nothing closes the
reader while the container runs: this is a no-op there.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import threading

from agent_sandbox.agent.process_tree import descendants

GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


def watch_host(fd: int = 1) -> bool:
    """Start the watch on `fd` if it is a pipe (True), else do nothing (False)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
    except OSError:
        return False
    threading.Thread(target=_watch, args=(fd,), name="host-watch", daemon=True).start()
    return True


def _watch(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)   # no events asked for: only the error and hang-up the kernel always reports
    while True:
        for _, revents in poller.poll():
            if revents & GONE:
                end_everything()


def end_everything() -> None:
    """SIGKILL every descendant, then exit at once (no event can reach anyone now)."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    os._exit(1)
