"""The model registry: only models that exist here, a clear word for the others."""

from __future__ import annotations

import pytest

from agent_sandbox.agent import models
from agent_sandbox.agent.models import UnknownModel, get_model
from agent_sandbox.settings import SettingError
from frontend.settings import Settings


def test_registered_models_load():
    assert get_model("offline").next_action
    assert get_model("scripted").name == "scripted"


def test_an_unknown_model_names_the_ones_there_are():
    with pytest.raises(UnknownModel, match=r"unknown model 'gpt-x'; use one of offline, scripted, openai, anthropic$"):
        get_model("gpt-x")


def test_a_model_whose_package_is_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(models.MODELS, "lab", "lab_sdk_not_installed.model:LabModel")
    with pytest.raises(UnknownModel, match=r"needs the Python package 'lab_sdk_not_installed'.*"
                                           r"\(pip install lab_sdk_not_installed\)"):
        get_model("lab:large")


def test_the_web_app_refuses_to_offer_a_model_that_is_not_there(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("APP_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("APP_MODELS", "offline,gpt-x")
    with pytest.raises(SettingError, match="^APP_MODELS: unknown model 'gpt-x'"):
        Settings.from_env()
