"""Restart recovery on a real server process, and the job store on a real SQLite file."""

from __future__ import annotations

import signal
import time

from web_helpers import only_events, sandbox_processes

from frontend.store import JobStore


def test_a_clean_shutdown_stops_running_sandboxes_and_records_it(start_server):
    server = start_server(APP_WORKERS=1)
    c = server.client()
    job = c.submit([{"kind": "shell", "command": "echo started; sleep 300"}]).json()
    c.wait_for_event(job["id"], lambda f: f["event"] == "output")
    server.stop(signal.SIGTERM)
    assert server.proc.returncode is not None
    assert sandbox_processes(job["id"]) == [], "no sandbox outlives the server"
    store = JobStore(server.root / "outputs" / "jobs.sqlite3")
    stored = store.get_job(job["id"])
    assert stored["status"] == "interrupted" and "server stopped" in stored["reason"]


def test_restart_marks_running_jobs_interrupted_and_runs_queued_ones(start_server):
    first = start_server(APP_WORKERS=1)
    c = first.client()
    running = c.submit([{"kind": "shell", "command": "echo started; sleep 300"}]).json()
    c.wait_for_event(running["id"], lambda f: f["event"] == "output")
    queued = c.submit([{"kind": "write_file", "path": "after.txt", "content": "ran after restart"}]).json()
    assert c.get(f"/api/jobs/{queued['id']}").json()["status"] == "queued"
    before = only_events(c.events(running["id"], stop_after=5))

    first.stop(signal.SIGKILL)  # a crash: nothing gets to clean up
    deadline = time.time() + 10
    while sandbox_processes(running["id"]) and time.time() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(running["id"]) == [], "the jail dies with the server"

    second = first.restart_on_same_data()
    start_server.track(second)
    c.base = second.base  # same browser (cookie jar): the session key persisted, same owner
    job = c.get(f"/api/jobs/{running['id']}").json()
    assert job["status"] == "interrupted" and "restarted" in job["reason"]
    replay = c.events(running["id"])
    assert replay[-1]["event"] == "end" and replay[-1]["data"]["status"] == "interrupted"
    events = only_events(replay)
    assert events[:5] == before, "the log from before the restart is still there"
    assert any(e["event"] == "error" and "restarted" in e["data"]["data"]["message"] for e in events)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))

    end = c.events(queued["id"])
    assert end[-1]["data"]["status"] == "succeeded", "the queued job ran after the restart"
    assert c.get(f"/api/jobs/{queued['id']}/outputs/after.txt").text == "ran after restart"
    history = [j["id"] for j in c.get("/api/jobs").json()["jobs"]]
    assert history == [queued["id"], running["id"]], "history survives, newest first"


def test_a_second_process_serves_streams_submits_and_cancels(start_server, tmp_path):
    runner = start_server(tmp_path / "shared")                    # runs the jobs
    front = start_server(tmp_path / "shared", APP_RUN_JOBS="0")   # pages, API and streams only
    c = front.client()
    done = c.submit([{"kind": "shell", "command": "echo from the runner"}]).json()
    frames = c.events(done["id"])  # streamed by the front process from the shared database
    assert frames[-1]["data"]["status"] == "succeeded"
    assert any("from the runner" in f["data"]["data"].get("text", "") for f in only_events(frames)
               if f["event"] == "output")
    runner_view = runner.client()
    runner_view.http.cookies = c.http.cookies  # same browser, other process: same owner, same events
    runner_view.base = runner.base
    assert only_events(runner_view.events(done["id"])) == only_events(frames)

    slow = c.submit([{"kind": "shell", "command": "echo started; sleep 300"}]).json()
    c.wait_for_event(slow["id"], lambda f: f["event"] == "output")
    assert sandbox_processes(slow["id"])
    assert c.post(f"/api/jobs/{slow['id']}/cancel").status_code == 202  # asked in the front process
    assert c.events(slow["id"])[-1]["data"]["status"] == "cancelled"
    deadline = time.time() + 10
    while sandbox_processes(slow["id"]) and time.time() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(slow["id"]) == []
