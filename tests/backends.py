"""Each backend as a pytest fixture, for every test that runs on all of them (the conformance
suite, tests/hostile/): import `backend` (and the fixtures it names) into the test module or
conftest. A backend joins by adding its name -> fixture name here and defining that fixture
(it may start services, e.g. the Modal emulator, and must clean them up)."""

from __future__ import annotations

import pytest

from agent_sandbox.backends import get_backend

__all__ = ["backend", "docker_backend", "local_backend", "modal_backend", "modal_docker_backend"]
# backend name -> (fixture that yields a ready backend, environment the agent must report)
BACKENDS = {
    "local": ("local_backend", "local"),
    "docker": ("docker_backend", "docker"),
    "modal": ("modal_backend", "modal"),
    "modal-docker": ("modal_docker_backend", "modal"),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    fixture, _ = BACKENDS[request.param]
    return request.getfixturevalue(fixture)


@pytest.fixture
def local_backend():
    return get_backend("local")


@pytest.fixture
def docker_backend():
    from tests.docker_engine import require_docker
    return require_docker()


@pytest.fixture
def modal_backend():
    """The Modal backend, through the real `modal` client, against our local
    Modal API emulator (one per session, see tests/modal_support.py)."""
    from tests.modal_support import shared_emulator

    emulator = shared_emulator()
    yield get_backend("modal")
    left = emulator.running_sandboxes()
    assert not left, f"sandboxes left running: {left}"


@pytest.fixture
def modal_docker_backend():
    """The same, with the emulator running sandboxes as Docker containers."""
    from tests.modal_support import require_docker_runtime, shared_emulator

    emulator = shared_emulator()
    require_docker_runtime()
    emulator.use_runtime("docker")
    try:
        yield get_backend("modal")
    finally:
        emulator.use_runtime("bwrap")
    left = emulator.running_sandboxes()
    assert not left, f"sandboxes left running: {left}"
