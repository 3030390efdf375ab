"""Who started a sandbox: the "host:pid" label every backend puts on its sandboxes,
so a sweep can tell the sandboxes of a dead process from those of a live one."""

from __future__ import annotations

import os
import socket


def this_process() -> str:
    """"host:pid" of this process, as backends label their sandboxes with it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(owner: str) -> bool:
    """Is the process that started a sandbox ("host:pid", from this_process) still running?

    Another machine's process is not ours to judge (counted alive); a missing
    or malformed label means nobody owns the sandbox any more."""
    host, _, pid = owner.rpartition(":")
    if not host:
        return False
    if host != socket.gethostname():
        return True
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True
