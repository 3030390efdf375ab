"""Where is the agent running? Modal, Docker or a local sandbox.

Modal sets MODAL_TASK_ID in its containers; Docker leaves /.dockerenv (and
shows in the cgroup); anything else is local.
"""

from __future__ import annotations

import os
from pathlib import Path

MODAL, DOCKER, LOCAL = "modal", "docker", "local"


def detect_environment(environ: dict | None = None, root: Path = Path("/")) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("MODAL_TASK_ID"):
        return MODAL
    if (root / ".dockerenv").exists():
        return DOCKER
    try:
        cgroup = (root / "proc/1/cgroup").read_text()
    except OSError:
        cgroup = ""
    if "docker" in cgroup or "containerd" in cgroup:
        return DOCKER
    return LOCAL


def environment_details(kind: str, environ: dict | None = None) -> dict:
    """Facts worth reporting in the run_started event (nothing secret)."""
    environ = os.environ if environ is None else environ
    details = {"environment": kind, "pid": os.getpid()}
    if kind == MODAL:
        for name in ("MODAL_TASK_ID", "MODAL_IMAGE_ID", "MODAL_REGION", "MODAL_CLOUD_PROVIDER"):
            if environ.get(name):
                details[name.lower()] = environ[name]
    elif kind == DOCKER:
        details["hostname"] = environ.get("HOSTNAME", "")
    return details
