"""The job store on a real SQLite file and on a real PostgreSQL database (tests/postgres.py),
and the app that writes to it where the disk runs out.

Several `JobStore`s on one database stand for several processes: each has its own connections.
"""

from __future__ import annotations

import io
import json
import os
import queue
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from web_helpers import StandInBackend

from agent_sandbox.events import FINAL
from frontend.app import create_app
from frontend.settings import Settings
from frontend.store import EVENTS, MIGRATIONS, QUEUE, JobStore
from tests.leftovers import wait_until


def new_job(store: JobStore, job_id: str, owner: str = "o", **fields) -> dict | None:
    return store.create_job({"id": job_id, "owner": owner, "backend": "local", "model": "offline", **fields})


def at_once(count: int, work) -> list:
    """Run work(i) for i in range(count) on threads released together; their results, in order."""
    start, results = threading.Barrier(count), [None] * count

    def run(i):
        start.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_processes_starting_at_once_migrate_once(database):
    stores = at_once(4, lambda i: JobStore(database))   # each would run every migration on an empty database
    new_job(stores[0], "job1")
    assert all(s.get_job("job1")["status"] == "queued" for s in stores)
    with stores[1].db.connect() as db:
        assert stores[1].db.schema_version(db) == len(MIGRATIONS)


def test_events_are_numbered_without_gaps_under_writers_in_several_processes(database):
    stores = [JobStore(database), JobStore(database)]
    new_job(stores[0], "job1", status="running")
    at_once(4, lambda n: [stores[n % 2].append_event("job1", {"type": "raw", "data": {"text": f"{n}-{i}"}})
                          for i in range(50)])
    events = list(stores[1].iter_events("job1"))
    assert [e["seq"] for e in events] == list(range(1, 201))
    assert sorted(e["data"]["text"] for e in events) == sorted(f"{n}-{i}" for n in range(4) for i in range(50))
    assert JobStore(database).get_job("job1")["last_seq"] == 200, "reopened: migrations ran once, data kept"


def test_runners_claiming_at_once_each_get_another_job_oldest_first(database):
    stores = [JobStore(database), JobStore(database)]
    for i in range(60):
        new_job(stores[0], f"job{i:02}", created=1000.0 + i)

    def drain(n):
        got = []
        while (job_id := stores[n % 2].claim_next(f"runner{n}", 30)) is not None:
            got.append(job_id)
        return got

    claims = at_once(6, drain)
    every = sorted(job_id for got in claims for job_id in got)
    assert every == [f"job{i:02}" for i in range(60)], "each job claimed exactly once"
    assert all(got == sorted(got) for got in claims), "each runner got older jobs first"
    job = stores[1].get_job("job07")
    assert job["status"] == "running" and job["runner"] in {f"runner{n}" for n in range(6)}
    assert job["lease_expires"] > time.time() + 20


def test_a_claim_skips_the_job_another_runner_is_claiming_on_postgresql(postgres_cluster):
    """FOR UPDATE SKIP LOCKED: a runner does not wait for a job another runner has locked, it
    takes the next one (SQLite has one writer at a time: nothing to skip)."""
    url = postgres_cluster.new_database()
    store = JobStore(url)
    new_job(store, "older", created=1000.0)
    new_job(store, "newer", created=1001.0)
    with JobStore(url).transaction() as other:   # another runner, in the middle of claiming "older"
        other.execute("SELECT id FROM jobs WHERE id='older' FOR UPDATE")
        assert store.claim_next("runner", 30) == "newer"
        assert store.claim_next("runner", 30) is None
    assert store.claim_next("runner", 30) == "older"


def test_admission_caps_hold_across_processes(database):
    stores = [JobStore(database), JobStore(database)]
    created = at_once(8, lambda n: stores[n % 2].create_job(
        {"id": f"job{n}", "owner": "ann", "backend": "local", "model": "offline"}, max_per_owner=3))
    assert sum(job is not None for job in created) == 3, "three admitted, however many asked at once"
    assert stores[0].count_active("ann") == 3


def test_a_runners_heartbeat_renews_its_own_leases_only(database):
    store = JobStore(database)
    for i in range(3):
        new_job(store, f"job{i}", created=1000.0 + i)
    store.claim_next("a", 30), store.claim_next("b", 30), store.claim_next("a", 30)
    assert store.renew_leases("a", 30) == {"job0", "job2"}
    assert store.renew_leases("b", 30) == {"job1"}
    assert [r["holder"] for r in store.live_runners()] == ["a", "b"]
    store.end_runner("b")
    assert [r["holder"] for r in store.live_runners()] == ["a"]
    store.update_job("job0", status="succeeded")
    assert store.renew_leases("a", 30) == {"job2"}, "an ended job has no lease"


def test_an_expired_lease_is_taken_over_by_exactly_one_runner(database):
    stores = [JobStore(database), JobStore(database)]
    new_job(stores[0], "job1")
    assert stores[0].claim_next("dead", 0.2) == "job1"
    assert stores[1].leased_elsewhere("other") == [{"id": "job1", "runner": "dead", "expired": False}]
    assert stores[1].leased_elsewhere("other", local="here:") == [], "another host's live lease is not ours to judge"
    assert len(stores[1].leased_elsewhere("other", local="de")) == 1, "this host's runners are checked one by one"
    time.sleep(0.3)   # the database's clock says when a lease has expired
    assert [bool(j["expired"]) for j in stores[1].leased_elsewhere("other", local="here:")] == [True]
    assert stores[0].leased_elsewhere("dead") == [], "a runner's own jobs are not someone else's"
    taken = at_once(6, lambda n: stores[n % 2].take_over("job1", "dead", f"runner{n}", 30))
    assert taken.count(True) == 1
    winner = f"runner{taken.index(True)}"
    assert stores[0].get_job("job1")["runner"] == winner
    assert stores[0].renew_leases("dead", 30) == set(), "the old holder learns at its heartbeat"
    assert stores[1].renew_leases(winner, 30) == {"job1"}


def test_notices_reach_other_processes_on_postgresql(database):
    """PostgreSQL tells every listening process of a job's new events and of new jobs (delivered at
    commit); SQLite has no notices (its readers poll)."""
    listener, writer = JobStore(database), JobStore(database)
    heard: queue.Queue[tuple[str, str | None]] = queue.Queue()
    listens = [listener.on_notice(channel, lambda payload, c=channel: heard.put((c, payload)))
               for channel in (EVENTS, QUEUE)]
    if isinstance(database, Path):
        assert listens == [False, False]
        return
    assert listens == [True, True]
    assert {heard.get(timeout=10), heard.get(timeout=10)} == {(EVENTS, None), (QUEUE, None)}, "listening"
    new_job(writer, "job1")
    assert heard.get(timeout=10) == (QUEUE, "job1")
    writer.append_event("job1", {"type": "raw"})
    assert heard.get(timeout=10) == (EVENTS, "job1")
    writer.update_job("job1", status="cancelled")
    assert heard.get(timeout=10) == (EVENTS, "job1")
    writer.update_job("job1", name="renamed")
    with pytest.raises(queue.Empty):
        heard.get(timeout=0.5)   # nothing a viewer shows changed
    listener.close()


def test_a_full_disk_raises_its_own_error_and_the_store_goes_on(tmp_path):
    """SQLite rolls a transaction back by itself when the disk is full; the store must
    report that error (not 'cannot rollback') and keep working once there is room."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job({"id": "job1", "owner": "o", "backend": "local", "model": "offline"})
    with store.db.connect() as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={pages}")   # a full disk, as SQLite sees it
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.append_event("job1", {"type": "raw", "data": {"text": "x" * 100_000}})
    with store.db.connect() as db:
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


def test_a_listener_cut_off_listens_again_and_says_so(postgres_cluster):
    """The connection that listens is cut (a database restart, a proxy's timeout): it connects
    again and says so (None: read everything again), and notices flow as before."""
    import psycopg

    url = postgres_cluster.new_database()
    listener, writer = JobStore(url), JobStore(url)
    heard: queue.Queue[str | None] = queue.Queue()
    listener.on_notice(EVENTS, heard.put)
    assert heard.get(timeout=10) is None
    new_job(writer, "job1")
    with psycopg.connect(url, autocommit=True) as admin:
        cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'agent-sandbox-web listener' "
                            "AND datname = current_database()").fetchall()   # the cluster serves other tests too
    assert cut == [(True,)]
    assert heard.get(timeout=10) is None, "listening again, and told so"
    writer.append_event("job1", {"type": "raw"})
    assert heard.get(timeout=10) == "job1"
    listener.close()
