"""The two distributions, installed as a user would: `pip install "<repo>[playbook]"` (the
library and its CLI) and `pip install "<repo>/web"` (the web app), each in a new venv.

Slow (each venv installs pandas & co.): the `dist` lane, in `make test`, not `make test-fast`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

UV = Path(sys.executable).parent / "uv"
SAMPLE = REPO / "samples" / "plate_reader.csv"


def source(tmp_path: Path) -> Path:
    """The two distributions' files, as the repository has them, in a folder of this test's: a
    build (pip's, uv's) writes build/ and *.egg-info beside its sources, never in the repository."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in ("agent_sandbox", "web/frontend"):
        shutil.copytree(REPO / part, copy / part, ignore=ignore)
    for part in ("pyproject.toml", "web/pyproject.toml"):
        shutil.copy(REPO / part, copy / part)
    return copy


def new_venv(folder: Path, *requirements: str) -> Path:
    """A venv in `folder` with `requirements` pip-installed; its python."""
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *requirements], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def built_wheel(project: Path, out: Path) -> zipfile.ZipFile:
    if not UV.exists():
        pytest.skip(f"no uv beside {sys.executable} (make install puts the lock's uv there)")
    subprocess.run([str(UV), "build", "--wheel", "--out-dir", str(out), str(project)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_library_wheel_holds_neither_the_web_app_nor_the_emulator(tmp_path):
    repo = source(tmp_path)
    names = built_wheel(repo, tmp_path / "lib").namelist()
    tops = {name.split("/")[0] for name in names}
    assert "agent_sandbox/backends/sandbox-requirements.txt" in names
    assert "agent_sandbox/agent/playbook/scripts/analyze_table.py" in names
    assert {"frontend", "modal_emulator", "tests", "web"}.isdisjoint(tops), sorted(tops)
    web = built_wheel(repo / "web", tmp_path / "web").namelist()
    assert "frontend/templates/base.html" in web
    assert {name.split("/")[0] for name in web}.isdisjoint({"agent_sandbox", "modal_emulator", "tests"})


def test_the_library_alone_runs_the_cli_on_the_sample_in_a_new_venv(tmp_path):
    python = new_venv(tmp_path / "venv", f"{source(tmp_path)}[playbook]")
    where = subprocess.run([str(python), "-c", "import agent_sandbox; print(agent_sandbox.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert str(tmp_path / "venv") in where, "the installed library, not the repository's source"
    assert subprocess.run([str(python), "-c", "import flask"], capture_output=True).returncode != 0
    work = tmp_path / "work"
    (work / "samples").mkdir(parents=True)
    shutil.copy(SAMPLE, work / "samples")
    run = subprocess.run([str(python), "-m", "agent_sandbox", "run", "--output", str(tmp_path / "out"),
                          "samples/plate_reader.csv"], cwd=work, capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if not k.startswith("AGENT_SANDBOX_")})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "manifest.json").is_file()


def test_the_web_apps_tests_pass_with_both_distributions_installed(tmp_path):
    repo = source(tmp_path)
    python = new_venv(tmp_path / "venv", f"{repo}[playbook,llm,modal,test]", str(repo / "web"))
    # the tests alone, beside their own settings: nothing of the repository's source on the path
    shutil.copytree(REPO / "tests", tmp_path / "t" / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "modal_emulator", tmp_path / "t" / "modal_emulator",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "t" / "pyproject.toml")
    (tmp_path / "t" / "my_files").symlink_to(REPO / "my_files")
    (tmp_path / "t" / "samples").symlink_to(REPO / "samples")
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          # the routes in process, the settings, and one job through a server end to end
                          "tests/web/test_routes.py", "tests/web/test_web_settings.py",
                          "tests/web/test_web_api.py::test_upload_stream_results"],
                         cwd=tmp_path / "t", capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout.splitlines()[-1]
