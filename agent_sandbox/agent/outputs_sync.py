"""Inside a Modal sandbox: the outputs synced to their volume before the agent ends.

A v2 volume's writes reach Modal's storage when the sandbox terminates, or
earlier with `sync <mount>` (Modal's volume guide), with no promise of
timing. The agent syncs /outputs itself before it says it has finished, so
what it reports having left is on its way before the host ends the sandbox;
the host still lists until the volume shows it (backends/modal_volume.py).
"""

from __future__ import annotations

import subprocess

SYNC_TIMEOUT = 120.0   # seconds `sync` may take (a large output)


def sync_outputs(outputs: str) -> str:
    """Run `sync <outputs>`; "" when it worked, else why not (for a warning)."""
    try:
        done = subprocess.run(["sync", outputs], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=SYNC_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not sync {outputs} to its volume: {exc}"
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()[:300]
        return f"could not sync {outputs} to its volume (exit {done.returncode}): {error}"
    return ""
