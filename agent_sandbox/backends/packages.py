"""What every sandbox's Python gets, at the versions of the project's lock.

sandbox-requirements.txt beside this module is written from uv.lock by `make
lock` (scripts/sandbox_requirements.py): the `sandbox` extra and everything it
needs, one `name==version[ ; marker]` a line. The Docker image installs the
file as it is (pip evaluates the markers); the Modal image's recipe takes
`pinned()` for its Python; the local jail runs a Python whose environment was
installed from the same lock (`make install`).
"""

from __future__ import annotations

from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("sandbox-requirements.txt")
# The sandboxes are Linux, whatever the host that assembles their recipe.
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}


def requirements() -> list[str]:
    """The file's requirement lines, markers included."""
    lines = (line.strip() for line in REQUIREMENTS.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pinned(python_version: str | None = None) -> tuple[str, ...]:
    """`name==version` of every package a sandbox with CPython `python_version` ("3.11";
    default: the running one's) gets on Linux."""
    from packaging.markers import Marker  # the [modal] extra's; only the Modal recipe needs markers

    environment = dict(LINUX)
    if python_version:
        environment.update(python_version=python_version, python_full_version=f"{python_version}.0")
    chosen = []
    for line in requirements():
        requirement, _, marker = line.partition(";")
        if not marker.strip() or Marker(marker.strip()).evaluate(environment):
            chosen.append(requirement.strip())
    return tuple(chosen)
