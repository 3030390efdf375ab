"""Every backend must pass the conformance suite. A backend joins by adding
its name -> fixture name here and defining that fixture (it may start
services, e.g. the Modal emulator, and must clean them up)."""

from __future__ import annotations

import pytest

from agent_sandbox.backends import get_backend

# backend name -> (fixture that yields a ready backend, environment the agent must report)
BACKENDS = {
    "local": ("local_backend", "local"),
    "docker": ("docker_backend", "docker"),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    fixture, _ = BACKENDS[request.param]
    return request.getfixturevalue(fixture)


@pytest.fixture
def expected_environment(request, backend) -> str:
    return BACKENDS[backend.name][1]


@pytest.fixture
def local_backend():
    return get_backend("local")


@pytest.fixture
def docker_backend():
    from tests.docker_engine import require_docker
    return require_docker()
