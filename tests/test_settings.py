"""One way to read settings: declared once, parsed by type, clear errors, README generated."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_sandbox import settings
from agent_sandbox.backends.docker import DockerConfig
from agent_sandbox.backends.local import LocalBackend, LocalConfig
from agent_sandbox.backends.modal import ModalConfig
from agent_sandbox.settings import SettingError, UnknownSetting, setting
from agent_sandbox.spec import Limits
from frontend.settings import Settings
from tests.conftest import REPO


@dataclass
class Example:
    flag: bool = setting("EX_FLAG", False, "a switch")
    count: int = setting("EX_COUNT", 3, "a whole number")
    ratio: float = setting("EX_RATIO", 0.5, "a number")
    names: list[str] = setting("EX_NAMES", ["a"], "a list")
    folder: Path | None = setting("EX_FOLDER", None, "a path", old=("EX_OLD_FOLDER",))
    size: int = setting("EX_SIZE_MB", settings.MB, "a size", parse=settings.megabytes)
    internal: str = setting(None, "kept", "not from the environment")
    sample: Path | None = setting("EX_SAMPLE", Path("sample.csv"), "set but empty: none", blank=None)


def test_each_type_is_parsed_from_its_variable():
    env = {"EX_FLAG": "yes", "EX_COUNT": "12", "EX_RATIO": "2.5", "EX_NAMES": "x, y z",
           "EX_FOLDER": "/data", "EX_SIZE_MB": "1.5", "INTERNAL": "ignored"}
    got = settings.load(Example, env)
    assert got == Example(flag=True, count=12, ratio=2.5, names=["x", "y", "z"], folder=Path("/data"),
                          size=int(1.5 * settings.MB), internal="kept")
    assert settings.load(Example, {"EX_FLAG": "off", "EX_COUNT": "1e3"}).count == 1000
    assert settings.load(Example, {}) == Example(), "unset or empty variables keep the defaults"
    assert settings.load(Example, {"EX_COUNT": ""}).count == 3
    assert settings.load(Example, {"EX_SAMPLE": ""}).sample is None, "unless empty has a meaning"


@pytest.mark.parametrize("variable, value, expected", [
    ("EX_FLAG", "maybe", "expected 1/0, true/false, yes/no or on/off"),
    ("EX_COUNT", "2.5", "expected a whole number"),
    ("EX_RATIO", "half", "expected a number"),
    ("EX_SIZE_MB", "big", "expected a number of megabytes"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable, value, expected):
    with pytest.raises(SettingError) as caught:
        settings.load(Example, {variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r} is not valid: {expected}")
    assert "\n" not in message


def test_explicit_overrides_win_and_unknown_ones_are_refused():
    assert settings.load(Example, {"EX_COUNT": "5"}, count=7).count == 7
    assert settings.load(Example, {}, names="p,q").names == ["p", "q"], "text is parsed like a variable"
    with pytest.raises(UnknownSetting, match="unknown Example setting 'cont'; known: flag, count"):
        settings.load(Example, {}, cont=1)


@pytest.mark.parametrize("make", [
    lambda: Limits.from_env(run_timeot=3),
    lambda: LocalBackend(bwrapp="/usr/bin/bwrap"),
    lambda: settings.load(DockerConfig, imag="x"),
    lambda: ModalConfig.from_env(app="x"),
    lambda: Settings.from_env(worker=1),
])
def test_every_settings_class_refuses_an_unknown_override(make, monkeypatch, tmp_path):
    monkeypatch.setenv("APP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("APP_ENV_FILE", str(tmp_path / "none.env"))
    with pytest.raises(TypeError, match="unknown .* setting"):
        make()


def test_a_deprecated_variable_still_works_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert settings.load(Example, {"EX_OLD_FOLDER": "/old"}).folder == Path("/old")
    assert "EX_OLD_FOLDER is deprecated; set EX_FOLDER instead" in caplog.text
    assert settings.load(Example, {"EX_OLD_FOLDER": "/old", "EX_FOLDER": "/new"}).folder == Path("/new")


def test_stored_limits_load_after_fields_were_added_removed_or_renamed(monkeypatch):
    defaults = Limits(run_timeout=99, max_files=7)
    # A job queued by an older version: no max_files yet, a field since removed,
    # and one under a name since changed.
    stored = {"run_timeout": 30, "retired_limit": 1, "steps": 12}
    monkeypatch.setattr(Limits, "RENAMED", {"steps": "max_steps"})
    limits = Limits.restore(stored, defaults)
    assert (limits.run_timeout, limits.max_steps, limits.max_files) == (30, 12, 7)
    assert Limits.restore(json.loads(json.dumps(defaults.to_dict())), Limits()) == defaults


def test_limits_come_from_their_variables(monkeypatch):
    monkeypatch.setenv("AGENT_SANDBOX_RUN_TIMEOUT", "90")
    monkeypatch.setenv("AGENT_SANDBOX_MEMORY_MB", "512")
    limits = Limits.from_env(max_steps=3)
    assert (limits.run_timeout, limits.memory_mb, limits.max_steps) == (90.0, 512, 3)
    assert isinstance(limits.memory_mb, int)


def test_the_readme_tables_are_generated_from_the_declarations():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count("<!-- settings: ") == 6
    assert settings.render_readme(readme) == readme, "run: make docs"
    for cls in (Limits, LocalConfig, DockerConfig, ModalConfig, Settings):
        assert settings.table(cls) in readme


def test_the_cli_reports_a_bad_setting_in_one_line(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    env = {**os.environ, "AGENT_SANDBOX_IDLE_TIMEOUT": "never"}
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--output", str(tmp_path / "o"),
                           str(data)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "error: AGENT_SANDBOX_IDLE_TIMEOUT='never' is not valid: expected a number\n"


def test_the_server_reports_a_bad_setting_in_one_line(tmp_path):
    env = {**os.environ, "APP_DATA_DIR": str(tmp_path), "APP_ENV_FILE": str(tmp_path / "none.env"),
           "APP_PORT": "eighty"}
    proc = subprocess.run([sys.executable, "-m", "frontend"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "error: APP_PORT='eighty' is not valid: expected a whole number\n"
