"""The processes a command leaves behind, found and ended through /proc.

The agent becomes a subreaper, so the orphans of its commands (a grandchild that
detached itself with setsid or a double fork) are re-parented to it and can be
found below it. Used by the tools that run commands, by the limits held on them
(command_limits) and by the lifeline that ends them with the agent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

from agent_sandbox.process_group import signal_group

_subreaper = False


def become_subreaper() -> None:
    """Orphans of our commands get re-parented to us, so a timeout can find and
    kill a grandchild that detached itself with setsid or a double fork.
    Only the agent process does this: it runs one command at a time, so every
    descendant it has is that command's."""
    global _subreaper
    try:
        _subreaper = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        _subreaper = False


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, found through /proc (children first listed last)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the command, its process group and its descendants (as subreaper:
    also the orphans it left, which are now our children)."""
    victims = descendants(proc.pid)
    signal_group(proc.pid, signal.SIGKILL)
    if _subreaper:
        victims += descendants(os.getpid())
    for pid in [proc.pid] + victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
