"""Issue 26, F6: a job cannot fill the database with events, and its page cannot fill the
server's memory with them. Real server process, real local sandbox, real SQLite file."""

from __future__ import annotations

import threading
import time

from tests.attack import figure, rss_mb
from tests.web.web_helpers import wait_finished

MB = 1024 * 1024
# Each step prints 5 MB in 64 KB lines: about 80 events of 64 KB (the operator allows long outputs).
FLOOD_STEP = {"kind": "python", "code": "import sys\nfor _ in range(80): sys.stdout.write('A' * 65535 + '\\n')"}
STEPS = 40


def database_bytes(server) -> int:
    db = server.root / "outputs" / "jobs.sqlite3"
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def test_f6_a_flood_of_events_is_capped_and_the_page_reads_a_bounded_tail(start_server):
    server = start_server(AGENT_SANDBOX_MAX_OUTPUT_CHARS=6 * MB, AGENT_SANDBOX_MAX_STEPS=STEPS + 5,
                          APP_MAX_EVENT_MB_PER_JOB=32, APP_MAX_EVENTS_PER_JOB=20000)
    owner = server.client()
    before = database_bytes(server)
    start = time.monotonic()
    job = owner.submit([FLOOD_STEP] * STEPS).json()
    done = wait_finished(owner, job["id"], timeout=600)
    took = time.monotonic() - start
    grown = database_bytes(server) - before
    figure("F6", f"a job printing {STEPS * 5} MB of output in {took:.0f} s: the database grew by {grown / MB:.0f} MB "
                 f"({done['events']} events stored)")

    rss = rss_mb(server.proc.pid)
    peak = [rss]
    pages: list[int] = []

    def view() -> None:
        pages.append(owner.get(f"/jobs/{job['id']}", timeout=600).status_code)

    viewers = [threading.Thread(target=view) for _ in range(6)]
    for t in viewers:
        t.start()
    while any(t.is_alive() for t in viewers):
        peak.append(rss_mb(server.proc.pid))
        time.sleep(0.05)
    figure("F6", f"6 concurrent views of its page: server RSS {rss:.0f} MB -> peak {max(peak):.0f} MB "
                 f"(+{max(peak) - rss:.0f} MB), after {rss_mb(server.proc.pid):.0f} MB")

    assert grown < 40 * MB, "32 MB of events per job (APP_MAX_EVENT_MB_PER_JOB), plus the database's overhead"
    assert max(peak) - rss < 200 and pages == [200] * 6
    log = owner.events(job["id"], after=done["events"] - 10)   # the log's end (a reader of it all is too slow)
    said = [f["data"]["data"]["message"] for f in log if f.get("event") == "warning"]
    assert any(m.startswith("not stored:") for m in said), said   # the job's log says what was left out
    assert log[-1]["event"] == "end" and done["status"] == "succeeded"
