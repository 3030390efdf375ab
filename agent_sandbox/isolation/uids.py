"""A uid (and gid) of its own for each running sandbox, from a range no user of this host has.

The kernel counts some limits per uid (inotify instances, user namespaces, message queues...):
sandboxes sharing one uid share them, and one job could spend what every other needs. So as
root each run takes a uid no live run holds, from AGENT_SANDBOX_UIDS (a range like the ones
/etc/subuid reserves): it holds an exclusive lock on a file named after the uid in the host's
private folder (hostfiles) while it runs. The kernel drops the lock with the process that held
it, so a crash frees its uid; every process of the host sees the same locks.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

from agent_sandbox.isolation.hostfiles import private_root


class NoUid(OSError):
    pass


@dataclass
class RunUid:
    uid: int
    fd: int   # holds the uid's lock

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def parse_range(text: str) -> range:
    """"FIRST-LAST" (both included) as a range of uids above the system's."""
    first, sep, last = text.partition("-")
    try:
        span = range(int(first), int(last) + 1) if sep else range(int(first), int(first) + 1)
    except ValueError:
        raise NoUid(f"AGENT_SANDBOX_UIDS {text!r}: expected FIRST-LAST, e.g. 200000-299999") from None
    if not span or span.start < 1000:
        raise NoUid(f"AGENT_SANDBOX_UIDS {text!r}: expected a range of uids from 1000 up")
    return span


def take(uids: str) -> RunUid:
    """A uid of `uids` that no live run holds, held until released."""
    span = parse_range(uids)
    folder = private_root() / "uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    for uid in span:   # the lowest free one: the files stay as few as the runs at once
        fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return RunUid(uid, fd)
    raise NoUid(f"every uid of AGENT_SANDBOX_UIDS ({uids}) is held by a running sandbox")
