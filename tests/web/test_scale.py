"""Past one process: two web processes (`--role web`) and two runners (`--role runner`) on one
PostgreSQL database (a throwaway cluster, tests/postgres.py) and one shared data folder.

Polling is set to a minute, so whatever reaches a viewer or a runner sooner came by the
database's notices (LISTEN/NOTIFY); the stored events stay the truth for a resumed stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from web_helpers import Runner, free_port, only_events, wait_finished

from agent_sandbox.events import FINAL
from frontend.store import JobStore

HANG = [{"kind": "shell", "command": "echo started; sleep 300"}]
WRITE = [{"kind": "write_file", "path": "ran.txt", "content": "once"}]
POLL = 60   # seconds: far longer than anything below may take


@pytest.fixture
def cluster(start_server, postgres_cluster, tmp_path):
    """start(**env) -> (web processes, runners, store), all on one new database and one data folder."""

    def start(**env):
        url = postgres_cluster.new_database()
        shared = {"APP_DATABASE_URL": url, "APP_POLL_SECONDS": POLL, **env}
        runners = [start_server(tmp_path / "shared", kind=Runner, **shared) for _ in range(2)]
        webs = [start_server(tmp_path / "shared", APP_ROLE="web", **shared) for _ in range(2)]
        return webs, runners, JobStore(url)

    return start


def as_visitor(server, client):
    other = server.client()
    other.http.cookies, other.csrf = client.http.cookies, client.csrf
    return other


def final_statuses(events: list[dict]) -> list[str]:
    return [e["data"]["status"] for e in events if e["type"] == "status" and e["data"]["status"] in FINAL]


def test_a_viewer_on_one_web_process_follows_with_resume_a_job_a_runner_process_runs(cluster):
    (web_a, web_b), runners, store = cluster(APP_WORKERS=1)
    assert "runs no jobs: 2 runner(s) run the jobs of this database" in web_a.read_log()
    c = web_b.client()
    script = [{"kind": "shell", "command": "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.3; done"},
              {"kind": "finish", "message": "done"}]
    began = time.monotonic()
    job = c.submit(script).json()              # through web B
    a = as_visitor(web_a, c)                   # the same visitor, watching on web A
    first = a.events(job["id"], stop_after=5)  # live, until the viewer goes away
    resumed = a.events(job["id"], last_event_id=first[-1]["id"])   # its browser reconnects
    took = time.monotonic() - began
    frames = only_events(first) + only_events(resumed)
    assert [f["id"] for f in frames] == list(range(1, len(frames) + 1)), "in order; nothing missed or repeated"
    lines = [f["data"]["data"]["text"].strip() for f in frames if f["event"] == "output"]
    assert [line for line in lines if line.startswith("line")] == [f"line {i}" for i in range(1, 7)]
    assert resumed[-1]["event"] == "end" and resumed[-1]["data"]["status"] == "succeeded"
    assert took < POLL / 2, f"queued, run and delivered in {took:.1f} s: by notices, not by the {POLL} s poll"

    assert store.get_job(job["id"])["runner"] in {r.holder() for r in runners}, "run by a runner process"
    assert only_events(c.events(job["id"])) == frames, "web B replays the same stored events"


def test_a_killed_runners_job_is_taken_over_by_the_other_within_its_lease(cluster):
    lease = 4
    webs, runners, store = cluster(APP_WORKERS=1, APP_RUNNER_LEASE_SECONDS=lease)
    c = webs[0].client()
    jobs = [c.submit(HANG).json()["id"] for _ in range(2)]   # one on each runner (one worker each)
    for job_id in jobs:
        c.wait_for_event(job_id, lambda f: f["event"] == "output")
    held = {store.get_job(job_id)["runner"]: job_id for job_id in jobs}
    victim, survivor = runners
    queued = c.submit(WRITE).json()["id"]   # waits: both runners are busy

    victim.stop(signal.SIGKILL)
    b = as_visitor(webs[1], c)
    job = wait_finished(b, held[victim.holder()], timeout=lease + 10)
    assert job["status"] == "interrupted" and "stopped or restarted" in job["reason"]
    assert store.get_job(held[victim.holder()])["runner"] == survivor.holder(), "taken over by the survivor"
    assert b.get(f"/api/jobs/{held[survivor.holder()]}").json()["status"] == "running", "its own job runs on"

    assert b.post(f"/api/jobs/{held[survivor.holder()]}/cancel").status_code == 202
    assert wait_finished(b, queued, timeout=60)["status"] == "succeeded"
    events = list(store.iter_events(queued))
    assert [e["type"] for e in events].count("run_started") == 1 and final_statuses(events) == ["succeeded"]
    assert store.get_job(queued)["runner"] == survivor.holder()
    assert b.get(f"/api/jobs/{queued}/outputs/ran.txt").text == "once", "its results, on the shared folder"


def test_two_hundred_jobs_through_two_web_processes_run_exactly_once_each(cluster):
    webs, runners, store = cluster(APP_WORKERS=3, APP_MAX_ACTIVE_JOBS=300, APP_MAX_ACTIVE_PER_OWNER=300,
                                   APP_MAX_ACTIVE_PER_ADDRESS=300, AGENT_SANDBOX_DISK_MB=64)  # (reserved per run)
    c = webs[0].client()
    visitors = [c, as_visitor(webs[1], c)]

    def submit(i: int) -> str:
        resp = visitors[i % 2].submit(WRITE)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(200)))
    assert len(set(ids)) == 200
    deadline = time.monotonic() + 600
    while store.count_active() and time.monotonic() < deadline:
        time.sleep(1)
    jobs = [store.get_job(job_id) for job_id in ids]
    assert Counter(job["status"] for job in jobs) == {"succeeded": 200}
    for job_id in ids:
        events = list(store.iter_events(job_id))
        assert [e["type"] for e in events].count("run_started") == 1, f"{job_id} ran more than once"
        assert final_statuses(events) == ["succeeded"]
    ran = Counter(job["runner"] for job in jobs)
    assert set(ran) == {r.holder() for r in runners}, f"both runners took jobs from the queue: {ran}"


def test_processes_starting_at_once_on_one_data_folder_agree_on_one_session_key(tmp_path):
    from frontend.settings import _secret_key

    path = tmp_path / "shared" / "secret_key"
    start = threading.Barrier(8)
    keys: list[str] = []

    def read_key():
        start.wait()
        keys.append(_secret_key(path))

    threads = [threading.Thread(target=read_key) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 64
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"], "no half-made key left behind"
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("args, env, says", [
    (["--role", "runner"], {"APP_DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:{port}/jobs"},
     "error: cannot reach the database postgresql://app@127.0.0.1:{port}/jobs: "),
    (["--port", "0"], {"APP_DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:{port}/jobs"},
     "error: cannot reach the database postgresql://app@127.0.0.1:{port}/jobs: "),
    ([], {"APP_DATABASE_URL": "mysql://app:hunter2@db/jobs"}, "error: APP_DATABASE_URL is not valid: expected "),
    ([], {"APP_ROLE": "everything"}, "error: APP_ROLE='everything' is not valid: expected all, web, runner"),
])
def test_bad_database_or_role_settings_say_so_in_one_line(tmp_path, args, env, says):
    port = free_port()   # nothing listens there
    env = {k: v.format(port=port) for k, v in env.items()}
    proc = subprocess.run([sys.executable, "-m", "frontend", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "APP_DATA_DIR": str(tmp_path / "data"),
                                           "APP_ENV_FILE": str(tmp_path / "no.env"), **env})
    assert proc.returncode in (1, 2) and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(says.format(port=port)), proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
