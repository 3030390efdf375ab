"""Tests against Modal itself: `make test-modal-live` (never in CI).

They run only when MODAL_TOKEN_ID is set (with MODAL_TOKEN_SECRET, or a
~/.modal.toml profile) and MODAL_SERVER_URL is not (that would be an
emulator), and `make test-modal-live` says so by AGENT_SANDBOX_MODAL_LIVE=1.
Each test ends what it made; they cost a few sandbox-minutes.
AGENT_SANDBOX_MODAL_LIVE=emulator runs them against the Modal that
MODAL_SERVER_URL names instead: a check of the tests themselves.
"""

from __future__ import annotations

import os

import pytest

APP_NAME = "agent-sandbox-live-test"


def pytest_collection_modifyitems(config, items):
    mode = os.environ.get("AGENT_SANDBOX_MODAL_LIVE")
    live = mode == "1" and os.environ.get("MODAL_TOKEN_ID") and not os.environ.get("MODAL_SERVER_URL")
    if live or (mode == "emulator" and os.environ.get("MODAL_SERVER_URL")):
        return
    skip = pytest.mark.skip(reason="against Modal itself: `make test-modal-live` with MODAL_TOKEN_ID set "
                                   "and MODAL_SERVER_URL unset")
    for item in items:
        if "tests/live/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture
def backend():
    from agent_sandbox.backends.modal import ModalBackend

    return ModalBackend(app_name=APP_NAME, retry_delay=2)
