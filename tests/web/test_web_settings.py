"""Settings from the environment and an optional .env file."""

from __future__ import annotations

import logging
import stat

import pytest

from agent_sandbox.settings import SettingError
from frontend.settings import Settings

KEYS = ("APP_ENV_FILE", "APP_OUTPUTS", "APP_DATA_DIR", "APP_MODELS", "APP_DEFAULT_MODEL", "APP_WORKERS",
        "APP_SECRET_KEY", "APP_MAX_FILE_MB", "APP_DATABASE", "APP_SECRET_KEY_FILE", "AGENT_SANDBOX_RUN_TIMEOUT")


@pytest.fixture
def env(monkeypatch, tmp_path):
    for k in KEYS:  # set first, so that monkeypatch also removes what a .env adds to os.environ
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    monkeypatch.setenv("APP_DATA_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("APP_ENV_FILE", str(tmp_path / "none.env"))
    return monkeypatch


def test_env_file_fills_in_and_the_environment_wins(env, tmp_path):
    dotenv = tmp_path / "app.env"
    dotenv.write_text("# comment\nAPP_MODELS=offline,scripted\nAPP_WORKERS=7\nAPP_MAX_FILE_MB='3'\n")
    env.setenv("APP_ENV_FILE", str(dotenv))
    env.setenv("APP_WORKERS", "3")
    s = Settings.from_env()
    assert s.models == ["offline", "scripted"] and s.default_model == "offline"
    assert s.workers == 3, "the real environment wins over .env"
    assert s.max_file_bytes == 3 * 1024 * 1024
    assert s.database == tmp_path / "out" / "jobs.sqlite3"


def test_secret_key_is_generated_once_and_kept_private(env, tmp_path):
    first = Settings.from_env().secret_key
    key_file = tmp_path / "out" / "secret_key"
    assert len(first) >= 32 and key_file.read_text() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Settings.from_env().secret_key == first, "sessions survive a restart"


def test_a_default_outside_the_allowed_list_is_refused(env):
    env.setenv("APP_MODELS", "offline")
    env.setenv("APP_DEFAULT_MODEL", "openai:gpt-4o")
    with pytest.raises(ValueError, match="not in APP_MODELS"):
        Settings.from_env()


@pytest.mark.parametrize("variable, value, expected", [
    ("APP_WORKERS", "two", "a whole number"),
    ("APP_RUN_JOBS", "sometimes", "1/0, true/false, yes/no or on/off"),
    ("APP_MAX_FILE_MB", "lots", "a number of megabytes"),
    ("AGENT_SANDBOX_RUN_TIMEOUT", "soon", "a number"),   # the limits load with the app's settings
])
def test_a_bad_value_is_one_line_naming_the_variable(env, variable, value, expected):
    env.setenv(variable, value)
    with pytest.raises(SettingError) as caught:
        Settings.from_env()
    assert str(caught.value) == f"{variable}={value!r} is not valid: expected {expected}"


def test_an_unknown_override_is_refused(env):
    with pytest.raises(TypeError, match="unknown Settings setting 'worker'"):
        Settings.from_env(worker=3)


def test_the_old_name_of_the_data_folder_still_works_with_a_warning(env, tmp_path, caplog):
    env.delenv("APP_DATA_DIR")
    env.setenv("APP_OUTPUTS", str(tmp_path / "old"))
    with caplog.at_level(logging.WARNING):
        s = Settings.from_env()
    assert s.data_dir == tmp_path / "old" and s.database == tmp_path / "old" / "jobs.sqlite3"
    assert "APP_OUTPUTS is deprecated; set APP_DATA_DIR instead" in caplog.text
    env.setenv("APP_DATA_DIR", str(tmp_path / "new"))
    assert Settings.from_env().data_dir == tmp_path / "new", "the new name wins"
