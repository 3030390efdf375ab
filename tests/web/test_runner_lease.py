"""Several runners on one database (frontend/lease.py), as real server processes, on SQLite and on PostgreSQL.

Each running job has its own lease, held by the runner that claimed it: two
runners run two jobs at once; a clean stop leaves the queue to the other
runner; a crashed runner's job is taken over at once (its process is gone), a
hung one's once its lease expires; the job of a runner that lost its lease
ends once and never runs twice. A second server started by mistake on a port
in use stops before it touches the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from web_helpers import Runner, only_events, sandbox_processes, wait_finished

from agent_sandbox.events import FINAL
from frontend.store import JobStore

SLOW = [{"kind": "shell", "command": "echo started; sleep 4; echo finished"}]
HANG = [{"kind": "shell", "command": "echo started; sleep 300"}]
WRITE = [{"kind": "write_file", "path": "ran.txt", "content": "once"}]
STAYS_QUEUED = "stays queued"


@pytest.fixture
def shared(database):
    """The servers' settings for one database: a SQLite file (its path), or PostgreSQL (its URL)."""
    key = "APP_DATABASE_URL" if isinstance(database, str) else "APP_DATABASE"
    return {key: str(database)}


def store_of(shared: dict) -> JobStore:
    return JobStore(shared.get("APP_DATABASE_URL") or shared["APP_DATABASE"])


def final_statuses(frames: list[dict]) -> list[str]:
    return [f["data"]["data"]["status"] for f in only_events(frames)
            if f["event"] == "status" and f["data"]["data"]["status"] in FINAL]


def ran_on(server, shared: dict, job_id: str) -> bool:
    return f":{server.proc.pid}:" in store_of(shared).get_job(job_id)["runner"]


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


def two_runners(start_server, tmp_path, shared, **env):
    first = start_server(tmp_path / "shared", APP_WORKERS=1, **shared, **env)
    second = start_server(tmp_path / "shared", APP_WORKERS=1, **shared, **env)
    return first, second


def one_hanging_job_each(first, second, shared):
    """A hanging job on each runner: (client, {server: its job})."""
    c = first.client()
    jobs = [c.submit(HANG).json() for _ in range(2)]
    for job in jobs:
        c.wait_for_event(job["id"], lambda f: f["event"] == "output")
    on = {server: next(j for j in jobs if ran_on(server, shared, j["id"])) for server in (first, second)}
    return c, on


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


def test_two_runners_share_the_queue_and_a_clean_stop_leaves_it_to_the_other(start_server, tmp_path, shared):
    first, second = two_runners(start_server, tmp_path, shared)
    assert "(1 other runner(s) on this database)" in second.read_log()
    c, on = one_hanging_job_each(first, second, shared)   # both run at once, one on each runner
    c2 = as_visitor(second, c)
    queued = c2.submit(WRITE).json()   # through the second process; both runners are busy
    assert c2.get(f"/api/jobs/{queued['id']}").json()["status"] == "queued"

    first.stop(signal.SIGTERM)   # a clean stop: its own job ends, the queue is the other runner's
    assert store_of(shared).get_job(on[first]["id"])["status"] == "interrupted"
    assert c2.post(f"/api/jobs/{on[second]['id']}/cancel").status_code == 202
    done = c2.events(queued["id"])
    assert final_statuses(done) == ["succeeded"]
    assert STAYS_QUEUED not in str(done), "another runner runs on: the job is not told to wait for a restart"
    assert ran_on(second, shared, queued["id"])
    assert c2.get(f"/api/jobs/{queued['id']}/outputs/ran.txt").text == "once"
    assert final_statuses(c2.events(on[second]["id"])) == ["cancelled"]


def test_a_crashed_runners_job_is_taken_over_by_the_other(start_server, tmp_path, shared):
    first, second = two_runners(start_server, tmp_path, shared, APP_RUNNER_LEASE_SECONDS=3)
    c, on = one_hanging_job_each(first, second, shared)
    first.stop(signal.SIGKILL)   # its process is gone: its job is taken over at the other's next heartbeat
    c2 = as_visitor(second, c)
    job = wait_finished(c2, on[first]["id"], timeout=10)
    assert job["status"] == "interrupted" and "stopped or restarted" in job["reason"]
    assert final_statuses(c2.events(on[first]["id"])) == ["interrupted"]
    assert ran_on(second, shared, on[first]["id"]), "taken over by the live runner"
    assert c2.get(f"/api/jobs/{on[second]['id']}").json()["status"] == "running", "a live runner's job is left alone"

    queued = c2.submit(WRITE).json()
    assert c2.post(f"/api/jobs/{on[second]['id']}/cancel").status_code == 202
    done = c2.events(queued["id"])
    assert final_statuses(done) == ["succeeded"]
    assert [f["event"] for f in only_events(done)].count("run_started") == 1, "run once"
    assert ran_on(second, shared, queued["id"])


def test_a_hung_runner_loses_its_jobs_lease_and_the_job_ends_once(start_server, tmp_path, shared):
    first, second = two_runners(start_server, tmp_path, shared, APP_RUNNER_LEASE_SECONDS=2)
    c, on = one_hanging_job_each(first, second, shared)
    hung = on[first]["id"]
    c2 = as_visitor(second, c)
    os.kill(first.proc.pid, signal.SIGSTOP)  # alive, but its heartbeat stops
    try:
        job = wait_finished(c2, hung, timeout=30)  # once its lease has expired
        assert job["status"] == "interrupted"
        assert c2.get(f"/api/jobs/{on[second]['id']}").json()["status"] == "running"
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    wait_for_log(first, "this runner lost its lease")
    deadline = time.monotonic() + 20
    while sandbox_processes(hung) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(hung) == [], "the old runner stopped the job it no longer holds"
    frames = c2.events(hung)
    assert final_statuses(frames) == ["interrupted"], "one end, written by the runner that took it over"
    assert only_events(frames)[-1]["data"]["data"]["status"] == "interrupted", "nothing written after it"

    after = c.submit(WRITE).json()   # the old runner runs jobs again, under new leases
    assert final_statuses(c.events(after["id"])) == ["succeeded"]
    assert ran_on(first, shared, after["id"])
    assert c2.post(f"/api/jobs/{on[second]['id']}/cancel").status_code == 202


def test_roles_on_one_machine_with_sqlite(start_server, tmp_path):
    """`--role runner` and `--role web` on one SQLite file: the web process runs nothing, the
    runner everything, and the web process polls the events the runner stores."""
    runner = start_server(tmp_path / "shared", kind=Runner)
    web = start_server(tmp_path / "shared", APP_ROLE="web")
    assert "runs no jobs: 1 runner(s) run the jobs of this database" in web.read_log()
    c = web.client()
    job = c.submit(SLOW).json()
    frames = c.events(job["id"])
    assert final_statuses(frames) == ["succeeded"]
    assert [f["data"]["data"]["text"].strip() for f in only_events(frames) if f["event"] == "output"] == [
        "started", "finished"]
    assert JobStore(tmp_path / "shared" / "outputs" / "jobs.sqlite3").get_job(job["id"])["runner"] == runner.holder()
    runner.stop(signal.SIGTERM)
    assert "runner stopped" in runner.read_log()
