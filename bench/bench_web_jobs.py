"""Jobs through the web app (real server, real local bubblewrap sandbox):

1. submit -> first event at an SSE client, and -> the agent's first event
   (run_started), beside the local backend's bare start (backend.run called
   directly: time to its first event and to run_started);
2. orchestration overhead: a job's wall time through the web app (POST ->
   `end` on the stream) / the same run through the CLI (process start ->
   exit), same backend, model and data (target <= 1.05);
3. a burst: 200 jobs submitted at once by 20 visitors with a fast agent:
   all finish, the caps hold (429 beyond them, never more than APP_WORKERS
   running), server RSS.

    .venv/bin/python bench/bench_web_jobs.py [--runs 5] [--burst 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "web"))
from web_helpers import Server  # noqa: E402

from agent_sandbox.backends import get_backend  # noqa: E402
from agent_sandbox.spec import RunSpec  # noqa: E402
from agent_sandbox.workspace import copy_my_files  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "plate_reader.csv"
QUICK = [{"kind": "shell", "command": "echo hello"}, {"kind": "finish", "message": "done"}]
WORK = [  # a few seconds of typical work, for the overhead ratio when the playbook is absent
    {"kind": "shell", "command": "head -5 /workspace/*.csv; wc -l /workspace/*.csv"},
    {"kind": "python", "code": "import pandas, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
                               "plt.plot([1, 2, 3]); plt.savefig('/outputs/plot.png')\n"
                               "open('/outputs/report.md', 'w').write('# Report\\n')"},
    {"kind": "finish", "message": "done"},
]
HAVE_PLAYBOOK = importlib.util.find_spec("agent_sandbox.agent.models.offline") is not None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def follow(client, job_id: str, t0: float) -> dict:
    """Seconds from t0 to the first event, to run_started, and to `end`."""
    marks: dict = {}
    with client.http.get(f"{client.base}/api/jobs/{job_id}/events", stream=True, timeout=600) as resp:
        for line in resp.iter_lines(decode_unicode=True):
            now = time.perf_counter() - t0
            if line.startswith("event: "):
                marks.setdefault("first", now)
                if line == "event: run_started":
                    marks.setdefault("run_started", now)
                if line == "event: end":
                    marks["end"] = now
                    return marks
    return marks


def submit(client, actions, model: str, files=None) -> dict:
    files = files or {"plate_reader.csv": SAMPLE.read_bytes()}
    data = {"model": model}
    if model == "scripted":
        data["script"] = json.dumps(actions)
    resp = client.post("/api/jobs", data=data, files=[("files", (n, b)) for n, b in files.items()])
    assert resp.status_code == 201, resp.text
    return resp.json()


def bench_latency(server: Server, runs: int) -> None:
    client = server.client()
    web_first, web_started, bare_first, bare_started = [], [], [], []
    backend = get_backend("local")
    for i in range(runs):
        t0 = time.perf_counter()
        job = submit(client, QUICK, "scripted")
        marks = follow(client, job["id"], t0)
        web_first.append(marks["first"])
        web_started.append(marks["run_started"])

        root = Path(tempfile.mkdtemp(prefix="bench-bare-"))
        (root / "ws").mkdir()
        (root / "ws" / "data.csv").write_bytes(SAMPLE.read_bytes())
        spec = RunSpec(job_id=f"bare{i}", workspace=root / "ws", results=root / "results", model="scripted",
                       env={"AGENT_SCRIPT": json.dumps(QUICK)})
        seen: dict = {}
        t0 = time.perf_counter()

        def on_event(e, t0=t0, seen=seen):
            seen.setdefault("first", time.perf_counter() - t0)
            if e["type"] == "run_started":
                seen.setdefault("run_started", time.perf_counter() - t0)

        backend.run(spec, on_event)
        bare_first.append(seen["first"])
        bare_started.append(seen["run_started"])
    ms = lambda xs: f"{statistics.median(xs) * 1000:7.1f} ms"  # noqa: E731
    print(f"\n1. start latency, median of {runs}")
    print(f"   web:  submit -> first SSE event {ms(web_first)}   submit -> run_started at the client {ms(web_started)}")
    print(f"   bare local backend.run():  -> first event {ms(bare_first)}   -> run_started {ms(bare_started)}")


def bench_overhead(server: Server, runs: int) -> None:
    model = "offline" if HAVE_PLAYBOOK else "scripted"
    client = server.client()
    web, cli, bare = [], [], []
    env = dict(os.environ, AGENT_SCRIPT=json.dumps(WORK))
    for i in range(runs):  # interleaved so machine noise hits both alike
        t0 = time.perf_counter()
        job = submit(client, WORK, model)
        marks = follow(client, job["id"], t0)
        web.append(marks["end"])
        final = client.get(f"/api/jobs/{job['id']}").json()["status"]
        assert final == "succeeded", final
        out = Path(tempfile.mkdtemp(prefix="bench-cli-")) / "out"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--json", "--model", model,
                        "--output", str(out), str(SAMPLE)], env=env, cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli.append(time.perf_counter() - t0)
        root = Path(tempfile.mkdtemp(prefix="bench-bare-"))
        (root / "ws").mkdir()
        (root / "ws" / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
        copy_my_files(root / "ws")  # the same inputs the web app and the CLI give the agent
        spec = RunSpec(job_id=f"over{i}", workspace=root / "ws", results=root / "results", model=model,
                       env={"AGENT_SCRIPT": json.dumps(WORK)})
        t0 = time.perf_counter()
        get_backend("local").run(spec, lambda e: None)
        bare.append(time.perf_counter() - t0)
    w, c, b = statistics.median(web), statistics.median(cli), statistics.median(bare)
    print(f"\n2. orchestration overhead, model {model}, median of {runs}")
    print(f"   web job (POST -> end event) {w:.2f} s   CLI run (process start -> exit) {c:.2f} s   "
          f"ratio web/CLI {w / c:.3f}")
    print(f"   (backend.run() alone, in this process: {b:.2f} s; web/bare {w / b:.3f})")


def bench_burst(total: int, root: Path) -> None:
    owners, per_owner, workers = 20, total // 20, 4
    server = Server(root, {"APP_MODELS": "scripted", "APP_WORKERS": str(workers),
                           "APP_MAX_ACTIVE_JOBS": str(total), "APP_MAX_ACTIVE_PER_OWNER": str(per_owner),
                           # the 20 visitors share the bench's one address: its caps are not what is measured
                           "APP_MAX_ACTIVE_PER_ADDRESS": str(total), "APP_NEW_VISITORS_PER_ADDRESS": "1000"}).start()
    try:
        clients = [server.client() for _ in range(owners)]
        base_rss = rss_mb(server.proc.pid)
        db = sqlite3.connect(f"file:{root / 'outputs' / 'jobs.sqlite3'}?mode=ro", uri=True,
                             check_same_thread=False)
        peak = {"running": 0, "rss": base_rss, "owner_active": 0, "active": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                running = db.execute("SELECT COUNT(*) FROM jobs WHERE status='running'").fetchone()[0]
                peak["running"] = max(peak["running"], running)
                per_owner_active = db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued','running') "
                                              "GROUP BY owner").fetchall()
                peak["owner_active"] = max([peak["owner_active"]] + [n for (n,) in per_owner_active])
                peak["active"] = max(peak["active"], sum(n for (n,) in per_owner_active))
                peak["rss"] = max(peak["rss"], rss_mb(server.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def one(client):
            data = {"model": "scripted", "script": json.dumps(QUICK)}
            return client.post("/api/jobs", data=data, files=[("files", ("d.csv", b"a\n1\n"))]).status_code

        t0 = time.perf_counter()
        # one more than the cap per visitor, all at once: the caps must hold at every moment
        tasks = [c for _ in range(per_owner + 1) for c in clients]
        with ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(one, tasks))
        submitted = time.perf_counter() - t0
        while db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued','running')").fetchone()[0]:
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        print(f"\n3. burst: jobs from {owners} visitors at once, {workers} workers, "
              f"caps {total} global / {per_owner} per visitor")
        print(f"   {len(tasks)} submissions ({per_owner + 1} per visitor) in {submitted:.1f} s: "
              f"{codes.count(201)} accepted, {codes.count(429)} refused with 429, other {len(codes) - codes.count(201) - codes.count(429)}")
        print(f"   all done in {elapsed:.1f} s ({codes.count(201) / elapsed:.1f} jobs/s); final statuses {statuses}")
        print(f"   most active (queued+running) at once: {peak['active']} (cap {total}), for one visitor: "
              f"{peak['owner_active']} (cap {per_owner}); running at once: {peak['running']} (cap {workers})")
        print(f"   "
              f"server RSS {base_rss:.0f} MB at start, {peak['rss']:.0f} MB peak")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--only", choices=["latency", "overhead", "burst"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-web-jobs-"))
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    if args.only in (None, "latency", "overhead"):
        server = Server(root / "a", {"APP_MODELS": "scripted,offline"}).start()
        try:
            if args.only in (None, "latency"):
                bench_latency(server, args.runs)
            if args.only in (None, "overhead"):
                bench_overhead(server, max(3, args.runs // 2))
        finally:
            server.stop()
    if args.only in (None, "burst"):
        bench_burst(args.burst, root / "b")


if __name__ == "__main__":
    main()
