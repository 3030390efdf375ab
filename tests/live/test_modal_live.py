"""The Modal backend against Modal itself: what the emulator can only imitate.

Run with `make test-modal-live` (see conftest.py). The same checks as the
emulator's tests where Modal's behaviour is not documented: how an exec's
stream ends when the sandbox ends under it, the return codes of its own time
limit and of a terminate from elsewhere, listing by tag, the volume's sync at
termination, and the image really built from the recipe.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid

import modal

from agent_sandbox import events as ev
from agent_sandbox.isolation.owners import this_process
from agent_sandbox.backends.modal import JOB_TAG, OWNER_TAG, PROCESS_TAG
from agent_sandbox.spec import Limits
from tests.conftest import REPO, make_spec
from tests.live.conftest import APP_NAME
from tests.test_modal_contract import run_prd_flow

LIMITS = Limits(run_timeout=300, command_timeout=240, idle_timeout=240, disk_mb=1024)


def test_contract_flow(tmp_path):
    run_prd_flow(tmp_path, APP_NAME)


def test_modals_own_time_limit_ends_the_run_as_timeout_with_partial_outputs(backend, tmp_path, recorder):
    backend.config.timeout_margin = -(LIMITS.run_timeout - 20)   # Modal's limit (20 s) comes first
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo kept > /outputs/a.txt; sleep 200"}], limits=LIMITS)
    result = backend.run(spec, recorder)
    assert result.status == ev.TIMEOUT, result.reason
    assert (spec.results / "a.txt").read_text() == "kept\n"


def test_a_terminate_from_outside_is_an_error_with_partial_outputs(backend, tmp_path):
    ids: list[str] = []

    def on_event(event):
        if event["type"] == ev.STATUS and event["data"]["message"].startswith("Modal sandbox "):
            ids.append(event["data"]["message"].split()[2])
        if event["type"] == ev.OUTPUT and "waiting" in event["data"].get("text", ""):
            threading.Thread(target=lambda: modal.Sandbox.from_id(ids[0]).terminate()).start()

    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo kept > /outputs/a.txt; echo waiting; sleep 200"}],
                     limits=LIMITS)
    result = backend.run(spec, on_event)
    assert result.status == ev.ERROR_STATUS and "terminated outside this run" in result.reason
    assert (spec.results / "a.txt").read_text() == "kept\n"
    assert result.duration < 120   # not the exec's deadline


def test_cleanup_by_id(backend):
    app = backend.lookup_app()
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=300)
    modal.Sandbox.from_id(sandbox.object_id).terminate()
    sandbox.wait(raise_on_termination=False)
    assert sandbox.returncode == 137


def test_cleanup_by_tag(backend):
    """The sweep finds a crashed process's sandbox by its tags (listing may lag: waited for)."""
    app = backend.lookup_app()
    host = this_process().rsplit(":", 1)[0]
    tags = {OWNER_TAG: backend.config.owner, JOB_TAG: f"live-{uuid.uuid4().hex[:8]}",
            PROCESS_TAG: f"{host}:999999999"}   # a process of this host that does not exist: crashed
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=300, tags=tags)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sandbox.poll() is None:
            backend.sweep_orphans()
            time.sleep(5)
        assert sandbox.poll() == 137, "the tag sweep did not find the sandbox (Sandbox.list by tags)"
    finally:
        sandbox.terminate()


def test_a_6_mb_output_comes_back_whole(backend, tmp_path, recorder):
    code = "import os; open('/outputs/big.bin', 'wb').write(os.urandom(6 * 1024 * 1024))"
    spec = make_spec(tmp_path, [{"kind": "python", "code": code}], limits=LIMITS)
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    [entry] = [f for f in result.manifest["files"] if f["path"] == "big.bin"]
    data = (spec.results / "big.bin").read_bytes()
    assert len(data) == 6 * 1024 * 1024 and entry["large"] and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_the_offline_agent_end_to_end_on_the_real_image(backend, tmp_path, recorder):
    sample = (REPO / "samples" / "plate_reader.csv").read_bytes()
    spec = make_spec(tmp_path, [], files={"plate_reader.csv": sample}, model="offline", limits=LIMITS)
    backend.prepare()   # the build log goes to the test's log
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    paths = {f["path"] for f in result.manifest["files"]}
    assert {"report.md", "plate_reader/plate_reader.parquet"} <= paths
    assert any(p.startswith("plate_reader/plots/") and p.endswith(".png") for p in paths)
    started = recorder.of_type(ev.RUN_STARTED)[0]["data"]
    assert started["environment"] == "modal" and started["modal_task_id"]
