"""SSE fan-out: N concurrent subscribers on one live job (real server, real local sandbox).

The job waits until every subscriber is connected (it polls for a `go` file
the bench drops into its workspace), then prints `--events` lines
`--interval` seconds apart. Each subscriber checks that it got every event id
exactly once and in order, plus the final `end`; delivery latency is the
receive time minus the event's own timestamp (taken by the agent inside the
sandbox, same host clock), so it includes the whole path sandbox -> backend
-> SQLite -> broadcaster -> socket. Clients are asyncio connections spread
over several processes. Prints p50/p99 latency and the server's RSS.

    .venv/bin/python bench/bench_web_fanout.py [--subscribers 500,2000,5000] [--events 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "web"))
from web_helpers import Server  # noqa: E402


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def subscribe(port: int, path: str, cookie: str, sem, connected, results: list) -> None:
    async with sem:  # open connections in waves so the server's accept queue keeps up
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                     f"Accept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
    connected()
    ids, lat, buf, ended = [], [], b"", False
    while not ended:
        size_line = await reader.readline()  # chunked transfer coding
        if not size_line:
            break
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        now = time.time()
        buf += chunk[:-2]
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line
                          and not line.startswith(b":"))
            if fields.get(b"event") == b"end":
                ended = True
            elif b"id" in fields:
                ids.append(int(fields[b"id"]))
                event = json.loads(fields[b"data"])
                if event["type"] == "output" and "tick" in event["data"].get("text", ""):
                    lat.append(now - event["ts"])
    writer.close()
    results.append((ids, lat, ended))


def client_process(port: int, path: str, cookie: str, n: int, ready, out) -> None:
    async def main():
        results: list = []
        count = [0]

        def connected():
            count[0] += 1
            if count[0] == n:
                ready.put(n)

        sem = asyncio.Semaphore(100)
        await asyncio.gather(*(subscribe(port, path, cookie, sem, connected, results) for _ in range(n)))
        return results

    results = asyncio.run(main())
    lost = sum(1 for ids, _, ended in results if not ended or ids != list(range(1, len(ids) + 1)))
    latencies = [x for _, lat, _ in results for x in lat]
    out.put({"clients": len(results), "bad": lost, "latencies": latencies,
             "events": sum(len(ids) for ids, _, _ in results)})


def run_once(server: Server, n: int, events: int, interval: float, procs: int) -> dict:
    import requests
    http = requests.Session()
    csrf = http.get(server.base + "/api/session").json()["csrf_token"]
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    script = [{"kind": "shell", "command": "while [ ! -f /workspace/go ]; do sleep 0.02; done; "
               f"for i in $(seq 1 {events}); do echo tick $i; sleep {interval}; done"}]
    job = http.post(server.base + "/api/jobs", headers={"X-CSRF-Token": csrf},
                    files=[("files", ("data.csv", b"a\n1\n"))],
                    data={"model": "scripted", "script": json.dumps(script)}).json()
    ctx = mp.get_context("fork")
    ready, out = ctx.Queue(), ctx.Queue()
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=client_process, args=(server.port, job["urls"]["events"], cookie, k, ready, out))
               for k in per if k]
    t0 = time.time()
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=300)
    connect_s = time.time() - t0
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(server.proc.pid)[0])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    (server.root / "outputs" / "uploaded_files" / job["id"] / "go").write_text("go")
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    stop.set()
    sampler.join()
    lat = sorted(x for r in results for x in r["latencies"])
    final = http.get(server.base + f"/api/jobs/{job['id']}").json()
    return {"subscribers": n, "connect_s": connect_s, "clients": sum(r["clients"] for r in results),
            "bad": sum(r["bad"] for r in results), "delivered": sum(r["events"] for r in results),
            "expected": final["events"] * n, "ticks": len(lat), "expected_ticks": events * n,
            "p50": lat[len(lat) // 2] if lat else float("nan"),
            "p99": lat[int(len(lat) * 0.99)] if lat else float("nan"),
            "max": lat[-1] if lat else float("nan"), "rss_peak": peak[0], "status": final["status"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", default="500,2000,5000")
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--procs", type=int, default=4)
    args = parser.parse_args()
    root = Path(mkdtemp(prefix="bench-web-fanout-"))
    server = Server(root, {"APP_MODELS": "scripted", "APP_HEARTBEAT_SECONDS": "15",
                           "APP_SERVER_THREADS": "64", "APP_SERVER_MAX_THREADS": "10000"}).start()
    try:
        base_rss = rss_mb(server.proc.pid)[0]
        print(f"SSE fan-out on one live job ({args.events} output events {args.interval}s apart); "
              f"server RSS at start {base_rss:.0f} MB; {os.cpu_count()} CPUs shared with the clients")
        print(f"{'subs':>6} {'connect':>8} {'delivered/expected':>22} {'lost/reordered':>15} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'RSS MB':>7}")
        for n in [int(x) for x in args.subscribers.split(",")]:
            r = run_once(server, n, args.events, args.interval, args.procs)
            print(f"{n:>6} {r['connect_s']:>7.1f}s {r['delivered']:>10}/{r['expected']:<11} "
                  f"{r['bad']:>15} {r['p50'] * 1000:>8.1f} {r['p99'] * 1000:>8.1f} {r['max'] * 1000:>8.1f} "
                  f"{r['rss_peak']:>7.0f}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
