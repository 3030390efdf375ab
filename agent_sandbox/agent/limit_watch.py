"""Inside the sandbox: what its limits did to a command, so the log can say so.

The kernel kills a process that takes the sandbox past its memory limit with
SIGKILL and refuses forks past its process limit with EAGAIN; neither says
why. The sandbox's cgroup counts both, and every backend shows the agent its
own cgroup (Docker mounts it; the local and emulator jails bind it
read-only), so the agent reads the counters before and after each command.
Where there is no cgroup to read (a platform that hides it) the counters are
None and nothing is claimed.

It also applies the one limit the agent itself sets: RLIMIT_NPROC, when the
host asks for it (a jail with a user namespace of its own and no cgroup,
where that count covers exactly the jail's processes).
"""

from __future__ import annotations

import resource

# counter -> the (file, key) pairs that hold it: cgroup v2 first, then v1.
COUNTERS = {
    "oom_kills": [("/sys/fs/cgroup/memory.events", "oom_kill"),
                  ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")],
    "forks_refused": [("/sys/fs/cgroup/pids.events", "max"),
                      ("/sys/fs/cgroup/pids/pids.events", "max")],
}


def read_counters() -> dict[str, int | None]:
    return {name: _first(places) for name, places in COUNTERS.items()}


def _first(places: list[tuple[str, str]]) -> int | None:
    for path, key in places:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.strip().partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def explain(before: dict[str, int | None], after: dict[str, int | None], limits: dict) -> list[str]:
    """What went wrong between two readings, in words for the log and the model."""
    notes = []
    oom = _grew(before, after, "oom_kills")
    if oom:
        notes.append(f"out of memory: the sandbox reached its memory limit ({limits.get('memory_mb', '?')} MB) "
                     f"and the kernel killed {oom} process{'es' if oom > 1 else ''}")
    forks = _grew(before, after, "forks_refused")
    if forks:
        notes.append(f"process limit reached: the sandbox may run {limits.get('max_processes', '?')} processes "
                     f"at once; {forks} new process{'es were' if forks > 1 else ' was'} refused")
    return notes


def _grew(before: dict, after: dict, name: str) -> int:
    if before.get(name) is None or after.get(name) is None:
        return 0
    return max(0, after[name] - before[name])


def apply_process_limit(count: int) -> None:
    """Cap this process and everything it starts at `count` processes (RLIMIT_NPROC)."""
    resource.setrlimit(resource.RLIMIT_NPROC, (count, count))
