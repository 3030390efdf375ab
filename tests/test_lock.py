"""One set of versions everywhere: uv.lock is the source, and what is installed agrees.

The venv (`make install`: `uv sync --locked`), the local jail's Python, the
Modal image's recipe and the list the images install
(agent_sandbox/backends/sandbox-requirements.txt) are checked here against the
lock; the Docker image's installed packages in test_lock_docker.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent_sandbox.backends import packages
from agent_sandbox.backends.local import LocalConfig
from agent_sandbox.settings import load
from tests.conftest import REPO

UV = Path(sys.executable).parent / "uv"
# Put in every venv by `python -m venv` itself, not by the lock.
SEEDED = {"pip", "setuptools", "wheel"}
WORKSPACE = {"agent-sandbox", "agent-sandbox-web"}
VERSIONS_SCRIPT = """
import importlib.metadata, json, sys
print(json.dumps({"python": "%d.%d" % sys.version_info[:2],
                  "versions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}}))
"""


def norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def locked() -> dict[str, set[str]]:
    """name -> the versions uv.lock has for it (two only where it forks by Python version)."""
    versions: dict[str, set[str]] = {}
    for package in tomllib.loads((REPO / "uv.lock").read_text())["package"]:
        if "version" in package:
            versions.setdefault(norm(package["name"]), set()).add(package["version"])
    return versions


def pins(requirements) -> dict[str, str]:
    return {norm(name): version for name, _, version in (r.partition("==") for r in requirements)}


def installed_in(python: str) -> tuple[str, dict[str, str]]:
    out = subprocess.run([python, "-I", "-c", VERSIONS_SCRIPT], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    return found["python"], {norm(name): version for name, version in found["versions"].items()}


def test_the_sandbox_list_is_the_locks_export():
    if not UV.exists():
        pytest.skip(f"no uv beside {sys.executable} (make install puts the lock's uv there)")
    check = subprocess.run([sys.executable, str(REPO / "scripts" / "sandbox_requirements.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_sandbox_list_pins_the_locks_versions_and_has_the_statistics_libraries():
    lock = locked()
    listed = pins(packages.pinned("3.11"))
    assert {"pandas", "duckdb", "openai", "anthropic", "scipy", "statsmodels"} <= set(listed)
    wrong = {name: version for name, version in listed.items() if version not in lock.get(name, ())}
    assert not wrong, f"not the lock's versions: {wrong}"


def test_every_package_of_this_venv_is_the_locks_version():
    lock = locked()
    here = {norm(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    outside = sorted(set(here) - set(lock) - SEEDED)
    wrong = {name: (version, sorted(lock[name])) for name, version in here.items()
             if name in lock and name not in WORKSPACE and version not in lock[name]}
    assert not outside, f"installed but not in uv.lock: {outside} (make install removes them)"
    assert not wrong, f"installed at other versions than uv.lock's: {wrong}"


def test_the_local_jails_python_has_the_sandbox_list():
    python = load(LocalConfig).python
    version, found = installed_in(python)
    expected = pins(packages.pinned(version))
    differ = {name: (found.get(name), want) for name, want in expected.items() if found.get(name) != want}
    assert not differ, f"{python}: (installed, listed) {differ}"


def test_the_modal_recipe_installs_the_sandbox_list_and_the_emulator_finds_it_here():
    from agent_sandbox.backends.modal import ModalConfig
    from agent_sandbox.backends.modal_image import runtime_packages
    from modal_emulator.images import missing_packages_error

    config = load(ModalConfig)
    recipe = runtime_packages(config)
    assert recipe == packages.pinned(config.python_version)
    assert all("==" in requirement for requirement in recipe)
    # The emulator's bwrap runtime maps the image to this host's packages: each pin must be here.
    layer = ["FROM base", "RUN python -m pip install " + " ".join(shlex.quote(r) for r in recipe)]
    assert missing_packages_error(layer) == ""


def test_a_lock_behind_its_pyproject_is_refused(tmp_path):
    if not UV.exists():
        pytest.skip(f"no uv beside {sys.executable} (make install puts the lock's uv there)")
    for name in ("pyproject.toml", "uv.lock", "web/pyproject.toml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)

    def check() -> subprocess.CompletedProcess:
        # (not --offline: a fresh machine's cache holds only this platform's files, and the lock
        # covers every platform)
        return subprocess.run([str(UV), "lock", "--locked"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)

    assert check().returncode == 0, check().stderr
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"statsmodels>=0.14",', ""))   # a hand edit, no `make lock`
    refused = check()
    assert refused.returncode != 0 and "--locked" in refused.stderr, refused.stderr
