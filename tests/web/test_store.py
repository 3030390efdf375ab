"""The job store on a real SQLite file, and the app that writes to it, where the disk runs out."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from agent_sandbox.events import FINAL
from frontend.app import create_app
from frontend.settings import Settings
from frontend.store import JobStore
from tests.leftovers import wait_until
from web_helpers import StandInBackend


def test_a_full_disk_raises_its_own_error_and_the_store_goes_on(tmp_path):
    """SQLite rolls a transaction back by itself when the disk is full; the store must
    report that error (not 'cannot rollback') and keep working once there is room."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job({"id": "job1", "owner": "o", "backend": "local", "model": "offline"})
    db = store._db()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")   # a full disk, as SQLite sees it
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.append_event("job1", {"type": "raw", "data": {"text": "x" * 100_000}})
    db.execute("PRAGMA max_page_count=1073741823")
    assert store.append_event("job1", {"type": "raw", "data": {"text": "room again"}}) == 1
    assert [e["data"]["text"] for e in store.iter_events("job1")] == ["room again"]


class DiskFillingBackend(StandInBackend):
    """Plays the script, then fills the disk the job store is on (as a job's results might)."""

    def __init__(self, scratch: Path, filler: Path):
        super().__init__(scratch)
        self.filler = filler

    def sandbox(self, spec):
        sandbox = super().sandbox(spec)
        start = sandbox.start

        def start_then_fill(run):
            streams = start(run)
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 65536)
            except OSError:   # No space left on device
                pass
            finally:
                os.close(fd)
            return streams

        sandbox.start = start_then_fill
        return sandbox


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs the suite as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "none", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_job_whose_end_meets_a_full_disk_is_recorded_once_there_is_room(small_disk, tmp_path, caplog):
    """The database refuses the job's final status (a real full filesystem): the job must not
    stay 'running' for ever; its end, with its final event, is written once there is room."""
    filler = small_disk / "filler"
    settings = Settings(data_dir=small_disk / "app", models=["scripted"], secret_key="disk-full",
                        poll_seconds=0.05, runner_lease_seconds=1.5)
    settings.resolve()
    app = create_app(settings, backend_factory=lambda name: DiskFillingBackend(tmp_path / "scratch", filler))
    try:
        http = app.test_client()
        csrf = http.get("/api/session").json["csrf_token"]
        script = [{"kind": "shell", "command": "echo hello"}, {"kind": "finish", "message": "done"}]
        resp = http.post("/api/jobs", headers={"X-CSRF-Token": csrf}, content_type="multipart/form-data",
                         data={"model": "scripted", "script": json.dumps(script),
                               "files": [(io.BytesIO(b"a\n1\n"), "data.csv")]})
        assert resp.status_code == 201, resp.json
        job_id = resp.json["id"]
        store = app.extensions["jobs"].store
        wait_until(lambda: "could not record that it ended" in caplog.text, 30, "the end refused")
        assert store.get_job(job_id)["status"] == "running", "the full disk refused the final status"

        filler.unlink()   # room again
        wait_until(lambda: store.get_job(job_id)["status"] in FINAL, 30, "the end written once there is room")
        events = list(store.iter_events(job_id))
        assert events[-1]["type"] == "status" and events[-1]["data"]["status"] == store.get_job(job_id)["status"]
        assert [e["data"]["status"] for e in events if e["type"] == "status"].count(events[-1]["data"]["status"]) == 1
        assert "is recorded at last" in caplog.text
    finally:
        app.extensions["jobs"].executor.stop()
        app.extensions["jobs"].hub.stop()
