"""python scripts/locked_version.py NAME: the version uv.lock pins NAME to (the Makefile's
bootstrap installs the lock's own uv with it). Standard library only: it runs before anything
is installed."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "uv.lock"


def locked_version(name: str) -> str:
    packages = tomllib.loads(LOCK.read_text())["package"]
    versions = {p["version"] for p in packages if p["name"] == name and "version" in p}
    if len(versions) != 1:
        raise SystemExit(f"uv.lock pins {name} to {sorted(versions) or 'nothing'}, not one version")
    return versions.pop()


if __name__ == "__main__":
    print(locked_version(sys.argv[1]))
