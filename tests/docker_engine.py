"""The Docker tests need a running engine and the agent image. Without them they
fail with what to do, never skip silently. AGENT_SANDBOX_SKIP_DOCKER=1 skips
them, engine or not (for machines that cannot run Docker; `make test` then
does not set Docker up either)."""

from __future__ import annotations

import os

import pytest

from agent_sandbox.backends import get_backend
from agent_sandbox.backends.docker import DockerBackend, DockerUnavailable


def skip_if_docker_skipped() -> None:
    if os.environ.get("AGENT_SANDBOX_SKIP_DOCKER") == "1":
        pytest.skip("Docker tests skipped (AGENT_SANDBOX_SKIP_DOCKER=1)")


def require_docker() -> DockerBackend:
    skip_if_docker_skipped()
    backend = get_backend("docker")
    try:
        backend.check_image()
    except (DockerUnavailable, OSError) as exc:
        pytest.fail(f"Docker backend tests need an engine and the image: {exc} "
                    "(make test sets both up; AGENT_SANDBOX_SKIP_DOCKER=1 skips these tests)", pytrace=False)
    return backend
