"""Past one process: two web + two runner processes on PostgreSQL against one process on SQLite,
side by side in one run (real servers, real local sandboxes, a throwaway PostgreSQL cluster).

For each setup:
1. live logs: `--jobs` jobs run at once, each printing `--events` lines
   `--interval` s apart once all `--viewers` viewers are connected (spread
   evenly over the jobs, and over the web processes); each viewer checks it
   got every event once and in order. Delivery latency is the receive time
   minus the event's own timestamp (taken by the agent in the sandbox, same
   host clock): sandbox -> runner -> database -> (NOTIFY) -> web process ->
   socket;
2. submissions: `--submissions` jobs posted (multipart, one small file) by
   `--clients` threads, alternating over the web processes: submissions per
   second and the POST's p50/p99; then how long the runners take to run them
   all (the same `--jobs` sandboxes at once in both setups: one process with
   that many workers, or two runners with half each).

Viewers are share-link visitors, each from its own loopback address (as in
bench_web_fanout.py). Both setups share the machine with the clients.

    .venv/bin/python bench/bench_scale.py [--viewers 500] [--jobs 10] [--submissions 200]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "web"), str(REPO / "bench")]
import requests  # noqa: E402
from bench_web_fanout import Stream, cpu_seconds, read_streams, rss_mb, share_cookie, subscriber_address  # noqa: E402
from web_helpers import Runner, Server  # noqa: E402

from tests.postgres import PostgresCluster  # noqa: E402

QUICK = [{"kind": "write_file", "path": "ran.txt", "content": "once"}]
# Every run reserves its disk up front (4 GB by default): 64 MB each, as other engineers' runs share the disk.
CAPS = {"AGENT_SANDBOX_DISK_MB": 64, "APP_MAX_ACTIVE_JOBS": 5000, "APP_MAX_ACTIVE_PER_OWNER": 5000, "APP_MAX_ACTIVE_PER_ADDRESS": 5000,
        "APP_MAX_STREAMS_PER_OWNER": 5000, "APP_MODELS": "scripted", "APP_HEARTBEAT_SECONDS": 15}


class Setup:
    def __init__(self, name: str, webs: list[Server], runners: list[Server]):
        self.name, self.webs, self.runners = name, webs, runners

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in {*self.webs, *self.runners}]

    def stop(self) -> None:
        for p in [*self.runners, *self.webs]:
            p.stop()


def one_process(root: Path, jobs: int) -> Setup:
    server = Server(root / "sqlite", {**_env(CAPS), "APP_WORKERS": str(jobs)}).start()
    return Setup("1 process, SQLite", [server], [server])


def two_and_two(root: Path, jobs: int, url: str) -> Setup:
    env = {**_env(CAPS), "APP_DATABASE_URL": url, "APP_WORKERS": str(max(1, jobs // 2))}
    runners = [Runner(root / "pg", env).start() for _ in range(2)]
    webs = [Server(root / "pg", {**env, "APP_ROLE": "web"}).start() for _ in range(2)]
    return Setup("2 web + 2 runners, PostgreSQL", webs, runners)


def _env(values: dict) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


def viewer_process(targets: list[tuple[int, str, str, str]], ready, out) -> None:
    """Viewers (port, events path, cookie, source address) on one epoll loop."""
    streams = [Stream(port, (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                             f"Accept: text/event-stream\r\n\r\n").encode(), source)
               for port, path, cookie, source in targets]
    read_streams(streams, on_connected=lambda: ready.put(len(streams)))
    bad = sum(1 for st in streams if not st.ended or st.ids != list(range(1, len(st.ids) + 1)))
    out.put({"viewers": len(streams), "bad": bad, "latencies": [x for st in streams for x in st.lat],
             "events": sum(len(st.ids) for st in streams)})


def wait_running(http: requests.Session, base: str, job_ids: list[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        statuses = [http.get(f"{base}/api/jobs/{j}").json()["status"] for j in job_ids]
        if all(s == "running" for s in statuses):
            return
        time.sleep(0.2)
    raise RuntimeError(f"jobs not all running after {timeout}s: {statuses}")


def live(setup: Setup, viewers: int, jobs: int, events: int, interval: float, procs: int) -> dict:
    web = setup.webs[0]
    http = requests.Session()
    csrf = http.get(web.base + "/api/session").json()["csrf_token"]
    script = [{"kind": "shell", "command": "while [ ! -f /workspace/go ]; do sleep 0.02; done; "
               f"for i in $(seq 1 {events}); do echo tick $i; sleep {interval}; done"}]
    ids = [http.post(web.base + "/api/jobs", headers={"X-CSRF-Token": csrf},
                     files=[("files", ("data.csv", b"a\n1\n"))],
                     data={"model": "scripted", "script": json.dumps(script)}).json()["id"] for _ in range(jobs)]
    wait_running(http, web.base, ids)
    cookies = {j: share_cookie(web, http, j, csrf) for j in ids}
    targets = []
    for i in range(viewers):
        job_id, server = ids[i % jobs], setup.webs[(i // jobs) % len(setup.webs)]
        targets.append((server.port, f"/api/jobs/{job_id}/events", cookies[job_id], subscriber_address(i)))
    ctx = mp.get_context("fork")
    ready, out = ctx.Queue(), ctx.Queue()
    workers = [ctx.Process(target=viewer_process, args=(targets[k::procs], ready, out)) for k in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=300)
    cpu0 = sum(cpu_seconds(pid) for pid in setup.pids)
    for job_id in ids:
        (web.root / "outputs" / "uploaded_files" / job_id / "go").write_text("go")
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    lat = sorted(x for r in results for x in r["latencies"])
    stored = sum(http.get(f"{web.base}/api/jobs/{j}").json()["events"] for j in ids) * (viewers // jobs)
    return {"viewers": sum(r["viewers"] for r in results), "bad": sum(r["bad"] for r in results),
            "delivered": sum(r["events"] for r in results), "expected": stored,
            "ticks": len(lat), "expected_ticks": events * viewers,
            "p50": lat[len(lat) // 2] if lat else float("nan"),
            "p99": lat[int(len(lat) * 0.99)] if lat else float("nan"),
            "cpu": sum(cpu_seconds(pid) for pid in setup.pids) - cpu0}


def submissions(setup: Setup, count: int, clients: int) -> dict:
    http = requests.Session()   # one visitor (its cookie is good on every web process), on each in turn
    csrf = http.get(setup.webs[0].base + "/api/session").json()["csrf_token"]

    def submit(i: int) -> tuple[float, str]:
        web = setup.webs[i % len(setup.webs)]
        t0 = time.perf_counter()
        resp = http.post(web.base + "/api/jobs", headers={"X-CSRF-Token": csrf},
                         files=[("files", ("data.csv", b"a,b\n1,2\n"))],
                         data={"model": "scripted", "script": json.dumps(QUICK)})
        assert resp.status_code == 201, resp.text
        return time.perf_counter() - t0, resp.json()["id"]

    cpu0 = sum(cpu_seconds(pid) for pid in setup.pids)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(submit, range(count)))
    wall = time.perf_counter() - t0
    took = sorted(d for d, _ in done)
    web = setup.webs[-1]
    waiting, ended, why = [j for _, j in done], Counter(), Counter()
    deadline = time.time() + 1800
    while waiting and time.time() < deadline:
        still = []
        for job_id in waiting:
            job = http.get(f"{web.base}/api/jobs/{job_id}").json()
            if job["status"] in ("queued", "running"):
                still.append(job_id)
            else:
                ended[job["status"]] += 1
                if job["status"] != "succeeded":
                    why[f"{job['reason']} {job['error']}"[:200]] += 1
        waiting = still
        time.sleep(1.0)
    drained = time.perf_counter() - t0
    ok = ended["succeeded"]
    if ok != count:
        print(f"{setup.name}: of {count} jobs {dict(ended)}, {len(waiting)} not ended; why: {why.most_common(3)}",
              flush=True)
    return {"rate": count / wall, "p50": statistics.median(took), "p99": took[int(len(took) * 0.99)],
            "drained": drained, "succeeded": ok, "count": count,
            "cpu": sum(cpu_seconds(pid) for pid in setup.pids) - cpu0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=10, help="live jobs (and sandboxes at once)")
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="viewer client processes")
    args = parser.parse_args()
    root = Path(mkdtemp(prefix="bench-scale-"))
    print(f"load average before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs shared with the clients")
    results = {}
    with PostgresCluster() as cluster:
        for make in (lambda: one_process(root, args.jobs), lambda: two_and_two(root, args.jobs, cluster.new_database())):
            setup = make()
            try:
                rss0 = sum(rss_mb(pid)[0] for pid in setup.pids)
                results[setup.name] = {"live": live(setup, args.viewers, args.jobs, args.events, args.interval,
                                                    args.procs),
                                       "submit": submissions(setup, args.submissions, args.clients),
                                       "rss": (rss0, sum(rss_mb(pid)[1] for pid in setup.pids))}
            finally:
                setup.stop()
            print(f"{setup.name}: done", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    report(results, args)


def report(results: dict, args) -> None:
    names = list(results)
    rows = [
        ("submissions per second", lambda r: f"{r['submit']['rate']:.1f}"),
        ("POST /api/jobs p50 / p99 ms", lambda r: f"{r['submit']['p50'] * 1000:.0f} / {r['submit']['p99'] * 1000:.0f}"),
        (f"{args.submissions} jobs run in s", lambda r: f"{r['submit']['drained']:.1f} ({r['submit']['succeeded']} ok)"),
        ("viewers (lost/reordered)", lambda r: f"{r['live']['viewers']} ({r['live']['bad']})"),
        ("events delivered/stored", lambda r: f"{r['live']['delivered']}/{r['live']['expected']}"),
        ("delivery p50 ms", lambda r: f"{r['live']['p50'] * 1000:.1f}"),
        ("delivery p99 ms", lambda r: f"{r['live']['p99'] * 1000:.1f}"),
        ("CPU s: live / submissions", lambda r: f"{r['live']['cpu']:.1f} / {r['submit']['cpu']:.1f}"),
        ("RSS MB: start / peak (sum)", lambda r: f"{r['rss'][0]:.0f} / {r['rss'][1]:.0f}"),
    ]
    print(f"\n{args.viewers} viewers on {args.jobs} live jobs ({args.events} events {args.interval}s apart); "
          f"{args.submissions} submissions by {args.clients} clients; {args.jobs} sandboxes at once in each setup")
    print(f"{'':30}" + "".join(f"{n:>32}" for n in names))
    for label, cell in rows:
        print(f"{label:30}" + "".join(f"{cell(results[n]):>32}" for n in names))


if __name__ == "__main__":
    main()
