"""Ending a process together with everything it started (its process group).

Our sandboxes and the agent's commands are started in a session of their own
(`start_new_session=True`), so their process group holds every process they
start that does not leave it on purpose.
"""

from __future__ import annotations

import os
import signal
import subprocess


def signal_group(pid: int, sig: int) -> bool:
    """Send `sig` to the process group led by `pid`; False if it is gone (or not ours)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def end_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the group, SIGKILL it if `proc` has not exited `grace` seconds later."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not signal_group(proc.pid, sig):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
