"""The Docker sandbox image holds exactly the lock's sandbox list (agent_sandbox/backends/
sandbox-requirements.txt, written from uv.lock): what its Python has installed, read inside it."""

from __future__ import annotations

import json
import subprocess

from agent_sandbox.backends import packages
from tests.docker_engine import require_docker
from tests.test_lock import SEEDED, VERSIONS_SCRIPT, norm, pins


def test_the_docker_image_has_exactly_the_sandbox_lists_versions():
    backend = require_docker()
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python",
                          backend.config.image, "-I", "-c", VERSIONS_SCRIPT],
                         capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(out.stdout)
    installed = {norm(name): version for name, version in found["versions"].items()}
    expected = pins(packages.pinned(found["python"]))
    extra = sorted(set(installed) - set(expected) - SEEDED)
    differ = {name: (installed.get(name), want) for name, want in expected.items() if installed.get(name) != want}
    assert not differ, f"{backend.config.image}: (installed, listed) {differ}"
    assert not extra, f"{backend.config.image} has packages the lock does not list: {extra}"
