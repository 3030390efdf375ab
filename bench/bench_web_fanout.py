"""SSE fan-out: N concurrent subscribers on one live job (real server, real local sandbox).

The job waits until every subscriber is connected (it polls for a `go` file
the bench drops into its workspace), then prints `--events` lines
`--interval` seconds apart. Each subscriber checks that it got every event id
exactly once and in order, plus the final `end`; delivery latency is the
receive time minus the event's own timestamp (taken by the agent inside the
sandbox, same host clock), so it includes the whole path sandbox -> backend
-> SQLite -> broadcaster -> socket. Clients are non-blocking sockets on an
epoll loop, spread over a few processes (they share the CPUs with the server). Prints p50/p99 latency and the server's RSS.

    .venv/bin/python bench/bench_web_fanout.py [--subscribers 500,2000,5000] [--events 40]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import socket
import re
import sys
import threading
import time
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "web"))
from web_helpers import Server  # noqa: E402


FRAME = re.compile(rb"id: (\d+)\nevent: (\w+)\ndata: ([^\n]*)")
TS = re.compile(rb'"ts":([0-9.]+)')


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class Stream:
    """One subscriber's connection and what it has received."""

    def __init__(self, port: int, request: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(request)
        self.head, self.buf = b"", b""
        self.ids: list[int] = []
        self.lat: list[float] = []
        self.ended = False

    def feed(self, data: bytes, now: float) -> None:
        if not self.head:  # still reading the response headers
            self.buf += data
            if b"\r\n\r\n" not in self.buf:
                return
            self.head, data = self.buf.split(b"\r\n\r\n", 1)
            assert b" 200 " in self.head.split(b"\r\n")[0], self.head
            self.buf = b""
        self.buf += data
        cut = self.buf.rfind(b"\n\n")
        if cut < 0:
            return
        done, self.buf = self.buf[:cut + 2], self.buf[cut + 2:]
        for m in FRAME.finditer(done):
            self.frame(int(m[1]), m[2], m[3], now)
        self.ended = self.ended or b"event: end" in done

    def frame(self, seq: int, event: bytes, data: bytes, now: float) -> None:
        """One event received at `now` (a tick's latency is now minus its own timestamp)."""
        self.ids.append(seq)
        if b'"text":"tick' in data:
            self.lat.append(now - float(TS.search(data)[1]))


def read_streams(streams: list[Stream], on_connected=None) -> None:
    """Read every stream on one epoll loop until each has ended; `on_connected()` once
    all have their response headers."""
    sel = selectors.DefaultSelector()
    for st in streams:
        st.sock.setblocking(False)
        sel.register(st.sock, selectors.EVENT_READ, st)
    open_streams = len(streams)
    while open_streams:
        if on_connected is not None and all(st.head for st in streams):
            on_connected()
            on_connected = None
        for key, _ in sel.select(timeout=1.0):
            st = key.data
            try:
                data = st.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            now = time.time()
            if data:
                st.feed(data, now)
            if not data or st.ended:
                sel.unregister(st.sock)
                st.sock.close()
                open_streams -= 1


def client_process(port: int, path: str, cookie: str, n: int, ready, out) -> None:
    """n subscribers on one epoll loop: the lightest client Python can be, to leave CPU to the server."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
               f"Accept: text/event-stream\r\n\r\n").encode()
    streams = [Stream(port, request) for _ in range(n)]
    read_streams(streams, on_connected=lambda: ready.put(n))
    bad = sum(1 for st in streams if not st.ended or st.ids != list(range(1, len(st.ids) + 1)))
    out.put({"clients": n, "bad": bad, "latencies": [x for st in streams for x in st.lat],
             "events": sum(len(st.ids) for st in streams)})


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
    cpu0, t_live = cpu_seconds(server.proc.pid), time.time()
    (server.root / "outputs" / "uploaded_files" / job["id"] / "go").write_text("go")
    results = [out.get(timeout=600) for _ in workers]
    cpu = cpu_seconds(server.proc.pid) - cpu0
    live_s = time.time() - t_live
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
            "max": lat[-1] if lat else float("nan"), "rss_peak": peak[0], "status": final["status"],
            "cpu": cpu, "live_s": live_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", default="500,2000,5000")
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    root = Path(mkdtemp(prefix="bench-web-fanout-"))
    server = Server(root, {"APP_MODELS": "scripted", "APP_HEARTBEAT_SECONDS": "15",
                           "APP_SERVER_THREADS": "64"}).start()  # the default server settings
    try:
        base_rss = rss_mb(server.proc.pid)[0]
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        print(f"SSE fan-out on one live job ({args.events} output events {args.interval}s apart); "
              f"server RSS at start {base_rss:.0f} MB; {os.cpu_count()} CPUs shared with the clients")
        print(f"{'subs':>6} {'connect':>8} {'delivered/expected':>22} {'lost/reordered':>15} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'RSS MB':>7} {'server CPU':>11}")
        for n in [int(x) for x in args.subscribers.split(",")]:
            r = run_once(server, n, args.events, args.interval, args.procs)
            print(f"{n:>6} {r['connect_s']:>7.1f}s {r['delivered']:>10}/{r['expected']:<11} "
                  f"{r['bad']:>15} {r['p50'] * 1000:>8.1f} {r['p99'] * 1000:>8.1f} {r['max'] * 1000:>8.1f} "
                  f"{r['rss_peak']:>7.0f} {r['cpu']:>5.1f}s/{r['live_s']:.1f}s", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
