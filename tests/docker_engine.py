"""The Docker tests need a running engine and the agent image. Without them they
fail with what to do, never skip silently: only AGENT_SANDBOX_SKIP_DOCKER=1
turns them into skips (for machines that cannot run Docker)."""

from __future__ import annotations

import os

import pytest

from agent_sandbox.backends import get_backend
from agent_sandbox.backends.docker import DockerBackend, DockerUnavailable


def require_docker() -> DockerBackend:
    backend = get_backend("docker")
    try:
        backend.check_image()
    except (DockerUnavailable, OSError) as exc:
        if os.environ.get("AGENT_SANDBOX_SKIP_DOCKER") == "1":
            pytest.skip(f"Docker tests skipped (AGENT_SANDBOX_SKIP_DOCKER=1): {exc}")
        pytest.fail(f"Docker backend tests need an engine and the image: {exc} "
                    "(make test sets both up; AGENT_SANDBOX_SKIP_DOCKER=1 skips these tests)", pytrace=False)
    return backend
