"""One runner per database (frontend/lease.py), with real server processes sharing one SQLite file.

A second server started by mistake (same port) stops before it touches the database; one on
another port waits for the runner lease and serves meanwhile; the lease passes on a clean
stop at once, after a crash at once (the holder's process is gone), and after a hang when it
expires; the job of a runner that lost its lease ends once, never runs twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from agent_sandbox.events import FINAL
from frontend.store import JobStore
from web_helpers import only_events, sandbox_processes, wait_finished

SLOW = [{"kind": "shell", "command": "echo started; sleep 4; echo finished"}]
HANG = [{"kind": "shell", "command": "echo started; sleep 300"}]
WRITE = [{"kind": "write_file", "path": "ran.txt", "content": "once"}]


def final_statuses(frames: list[dict]) -> list[str]:
    return [f["data"]["data"]["status"] for f in only_events(frames)
            if f["event"] == "status" and f["data"]["data"]["status"] in FINAL]


def runner_of(server, job_id: str) -> str:
    return JobStore(server.root / "outputs" / "jobs.sqlite3").get_job(job_id)["runner"]


def as_visitor(server, client):
    """`client` (its cookies, so its identity, and its CSRF token) talking to `server`."""
    other = server.client()
    other.http.cookies, other.csrf = client.http.cookies, client.csrf
    return other


def wait_for_log(server, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.read_log():
        assert time.monotonic() < deadline, f"{text!r} never appeared in the log:\n{server.read_log()[-3000:]}"
        time.sleep(0.1)


def test_a_second_server_on_the_same_port_stops_before_touching_the_database(start_server, tmp_path):
    first = start_server(tmp_path / "shared")
    c = first.client()
    job = c.submit(SLOW).json()
    c.wait_for_event(job["id"], lambda f: f["event"] == "output")
    env = {**os.environ, "APP_DATA_DIR": str(first.root / "outputs"), "APP_ENV_FILE": str(tmp_path / "no.env"),
           "APP_MODELS": "scripted,offline"}
    fresh_db = tmp_path / "fresh" / "jobs.sqlite3"
    for database in (first.root / "outputs" / "jobs.sqlite3", fresh_db):  # the same database, and a new one
        second = subprocess.run([sys.executable, "-m", "frontend", "--port", str(first.port)], cwd=tmp_path,
                                env={**env, "APP_DATABASE": str(database)}, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        assert second.stdout == "" and second.stderr.count("\n") == 1, second.stderr
        assert second.stderr.startswith(f"error: port {first.port} on 127.0.0.1 is already in use")
        assert "Traceback" not in second.stderr
    assert not fresh_db.exists(), "the port is bound before anything opens the database"

    frames = c.events(job["id"])
    assert final_statuses(frames) == ["succeeded"], "the first server's job ran on, with one end"
    assert frames[-1]["data"]["status"] == "succeeded"
    assert not any(f["event"] == "error" for f in only_events(frames))


def test_a_second_runner_waits_for_the_lease_and_takes_over_at_a_clean_stop(start_server, tmp_path):
    first = start_server(tmp_path / "shared")
    c = first.client()
    running = c.submit(SLOW).json()
    c.wait_for_event(running["id"], lambda f: f["event"] == "output")
    second = start_server(tmp_path / "shared")  # APP_RUN_JOBS=1 (the default), another port
    assert "this process waits for the runner lease" in second.read_log()
    assert "serves pages, the API and event streams" in second.read_log()

    c2 = as_visitor(second, c)  # the same visitor, through the second process
    via_second = c2.submit(WRITE).json()
    assert final_statuses(c2.events(via_second["id"])) == ["succeeded"]
    assert f":{first.proc.pid}:" in runner_of(first, via_second["id"]), "the lease holder ran it"
    frames = c.events(running["id"])
    assert final_statuses(frames) == ["succeeded"], "the second process left the running job alone"
    assert "interrupted" not in str(frames)

    first.stop(signal.SIGTERM)  # a clean stop gives the lease up: no waiting for it to expire
    wait_for_log(second, "this process now runs the jobs", timeout=20)
    after = c2.submit(WRITE).json()
    assert final_statuses(c2.events(after["id"])) == ["succeeded"]
    assert f":{second.proc.pid}:" in runner_of(second, after["id"])


def test_a_crashed_runners_jobs_are_recovered_by_the_waiting_one(start_server, tmp_path):
    first = start_server(tmp_path / "shared", APP_WORKERS=1)
    second = start_server(tmp_path / "shared", APP_WORKERS=1)
    c = first.client()
    running = c.submit(HANG).json()
    c.wait_for_event(running["id"], lambda f: f["event"] == "output")
    queued = c.submit(WRITE).json()
    first.stop(signal.SIGKILL)  # its process is gone: the lease is free at once
    c2 = as_visitor(second, c)
    job = wait_finished(c2, running["id"], timeout=30)
    assert job["status"] == "interrupted" and "restarted" in job["reason"]
    assert final_statuses(c2.events(running["id"])) == ["interrupted"]
    done = c2.events(queued["id"])
    assert final_statuses(done) == ["succeeded"]
    assert [f["event"] for f in only_events(done)].count("run_started") == 1, "run once"
    assert c2.get(f"/api/jobs/{queued['id']}/outputs/ran.txt").text == "once"
    assert f":{second.proc.pid}:" in runner_of(second, queued["id"])


def test_a_hung_runner_loses_its_lease_and_its_job_ends_once(start_server, tmp_path):
    first = start_server(tmp_path / "shared", APP_WORKERS=1, APP_RUNNER_LEASE_SECONDS=2)
    second = start_server(tmp_path / "shared", APP_WORKERS=1, APP_RUNNER_LEASE_SECONDS=2)
    c = first.client()
    running = c.submit(HANG).json()
    c.wait_for_event(running["id"], lambda f: f["event"] == "output")
    queued = c.submit(WRITE).json()
    c2 = as_visitor(second, c)
    os.kill(first.proc.pid, signal.SIGSTOP)  # alive, but its heartbeat stops
    try:
        job = wait_finished(c2, running["id"], timeout=30)  # once the lease has expired
        assert job["status"] == "interrupted"
        assert final_statuses(c2.events(queued["id"])) == ["succeeded"]
        assert f":{second.proc.pid}:" in runner_of(second, queued["id"])
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    wait_for_log(first, "lost the runner lease")
    deadline = time.monotonic() + 20
    while sandbox_processes(running["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(running["id"]) == [], "the old runner stopped the job it no longer owns"
    frames = c2.events(running["id"])
    assert final_statuses(frames) == ["interrupted"], "one end, written by the new runner"
    assert frames[-1]["data"]["status"] == "interrupted"
    assert only_events(frames)[-1]["data"]["data"]["status"] == "interrupted", "nothing written after it"
    assert [f["event"] for f in only_events(c2.events(queued["id"]))].count("run_started") == 1
    assert c2.get(f"/api/jobs/{queued['id']}").json()["status"] == "succeeded"
