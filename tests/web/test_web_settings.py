"""Settings from the environment and an optional .env file."""

from __future__ import annotations

import stat

import pytest

from frontend.settings import Settings

KEYS = ("APP_ENV_FILE", "APP_OUTPUTS", "APP_MODELS", "APP_DEFAULT_MODEL", "APP_WORKERS",
        "APP_SECRET_KEY", "APP_MAX_FILE_MB", "APP_DATABASE", "APP_SECRET_KEY_FILE")


@pytest.fixture
def env(monkeypatch, tmp_path):
    for k in KEYS:  # set first, so that monkeypatch also removes what a .env adds to os.environ
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    monkeypatch.setenv("APP_OUTPUTS", str(tmp_path / "out"))
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
    env.setenv("APP_ENV_FILE", str(tmp_path / "none.env"))
    first = Settings.from_env().secret_key
    key_file = tmp_path / "out" / "secret_key"
    assert len(first) >= 32 and key_file.read_text() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Settings.from_env().secret_key == first, "sessions survive a restart"


def test_a_default_outside_the_allowed_list_is_refused(env, tmp_path):
    env.setenv("APP_ENV_FILE", str(tmp_path / "none.env"))
    env.setenv("APP_MODELS", "offline")
    env.setenv("APP_DEFAULT_MODEL", "openai:gpt-4o")
    with pytest.raises(ValueError, match="not in APP_MODELS"):
        Settings.from_env()
