"""SSE fan-out: N concurrent subscribers on one live job (real server, real local sandbox),
clean and under abuse.

The job waits until every subscriber is connected (it polls for a `go` file
the bench drops into its workspace), then prints `--events` lines
`--interval` seconds apart. Each subscriber checks that it got every event id
exactly once and in order, plus the final `end`; delivery latency is the
receive time minus the event's own timestamp (taken by the agent inside the
sandbox, same host clock), so it includes the whole path sandbox -> backend
-> SQLite -> broadcaster -> socket. Clients are non-blocking sockets on an
epoll loop, spread over a few processes (they share the CPUs with the server). Prints p50/p99 latency and the server's RSS.

Subscribers are people the owner shared the job with (its share link, no
identity of their own), each from its own loopback address (127.1.x.y), as
the server's per-address caps expect of separate people. The abuse run
(`--abuse N`, N subscribers) repeats the run while one client (127.0.0.2)
holds as many streams on the job as its address may (the rest refused) and
`--slow` connections (from 127.0.2.x, `--slow-per-address` each) send a
request line and then one header line every 10 s, coming back whenever
they are cut off (they start 8 s ahead, so the server cuts them all off,
with a 408 at its 10 s header timeout, and they come back, while the job's
events flow); it reports the legitimate subscribers' figures beside the
clean run's.

    .venv/bin/python bench/bench_web_fanout.py [--subscribers 500,2000,5000] [--events 40] [--abuse 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "web"))
from web_helpers import Server, SlowClients  # noqa: E402

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

    def __init__(self, port: int, request: bytes, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
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


def subscriber_address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


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


def client_process(port: int, path: str, cookie: str, first: int, n: int, ready, out) -> None:
    """n subscribers on one epoll loop: the lightest client Python can be, to leave CPU to the server."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
               f"Accept: text/event-stream\r\n\r\n").encode()
    streams = [Stream(port, request, subscriber_address(i)) for i in range(first, first + n)]
    read_streams(streams, on_connected=lambda: ready.put(n))
    bad = sum(1 for st in streams if not st.ended or st.ids != list(range(1, len(st.ids) + 1)))
    out.put({"clients": n, "bad": bad, "latencies": [x for st in streams for x in st.lat],
             "events": sum(len(st.ids) for st in streams)})


def abuser_process(port: int, path: str, cookie: str, attempts: int, stop, out) -> None:
    """One client (127.0.0.2) opening streams on the job until refused, holding the ones it got."""
    held, refused = [], 0
    for _ in range(attempts):
        sock = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
        if b" 200 " in head.split(b"\r\n")[0]:
            sock.setblocking(False)
            held.append(sock)
        else:
            refused += 1
            sock.close()
    out.put({"held": len(held), "refused": refused})
    while not stop.is_set():  # read and drop what the streams bring, as a client that keeps them would
        for sock in held:
            try:
                while sock.recv(1 << 16):
                    pass
            except (BlockingIOError, OSError):
                pass
        stop.wait(0.2)


def slow_process(port: int, count: int, per_address: int, stop, out) -> None:
    out.put(SlowClients(port, count, per_address).run(stop))


def share_cookie(server: Server, http, job_id: str, csrf: str) -> str:
    """A visitor with the job's share link and no identity of its own."""
    import requests
    url = http.post(server.base + f"/api/jobs/{job_id}/share", headers={"X-CSRF-Token": csrf}).json()["url"]
    viewer = requests.Session()
    viewer.get(url if url.startswith("http") else server.base + url)
    return "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())


def run_once(server: Server, n: int, events: int, interval: float, procs: int, slow: int = 0,
             slow_per_address: int = 50, abuse: bool = False, head_start: float = 8.0) -> dict:
    import requests
    http = requests.Session()
    csrf = http.get(server.base + "/api/session").json()["csrf_token"]
    script = [{"kind": "shell", "command": "while [ ! -f /workspace/go ]; do sleep 0.02; done; "
               f"for i in $(seq 1 {events}); do echo tick $i; sleep {interval}; done"}]
    job = http.post(server.base + "/api/jobs", headers={"X-CSRF-Token": csrf},
                    files=[("files", ("data.csv", b"a\n1\n"))],
                    data={"model": "scripted", "script": json.dumps(script)}).json()
    cookie = share_cookie(server, http, job["id"], csrf)
    ctx = mp.get_context("fork")
    ready, out, side, stop = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Event()
    helpers = []
    if abuse:
        helpers = [ctx.Process(target=abuser_process, args=(server.port, job["urls"]["events"], cookie, 250, stop,
                                                            side)),
                   ctx.Process(target=slow_process, args=(server.port, slow, slow_per_address, stop, side))]
        for h in helpers:
            h.start()
        abuser = side.get(timeout=300)  # it holds its streams before the subscribers come
        time.sleep(head_start)          # and the slow clients dribble: cut off (408) and back during the run
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    workers = [ctx.Process(target=client_process, args=(server.port, job["urls"]["events"], cookie, first, k,
                                                        ready, out))
               for first, k in zip(firsts, per) if k]
    t0 = time.time()
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=300)
    connect_s = time.time() - t0
    peak = [0.0, len(os.listdir(f"/proc/{server.proc.pid}/fd"))]  # descriptors: all connected (counted once)
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
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
    sampling.set()
    sampler.join()
    slow_seen = {}
    if abuse:
        stop.set()
        slow_seen = side.get(timeout=60)
        for h in helpers:
            h.join(30)
    lat = sorted(x for r in results for x in r["latencies"])
    final = http.get(server.base + f"/api/jobs/{job['id']}").json()
    return {"subscribers": n, "connect_s": connect_s, "clients": sum(r["clients"] for r in results),
            "bad": sum(r["bad"] for r in results), "delivered": sum(r["events"] for r in results),
            "expected": final["events"] * n, "ticks": len(lat), "expected_ticks": events * n,
            "p50": lat[len(lat) // 2] if lat else float("nan"),
            "p99": lat[int(len(lat) * 0.99)] if lat else float("nan"),
            "max": lat[-1] if lat else float("nan"), "rss_peak": peak[0], "fds_peak": peak[1],
            "status": final["status"], "cpu": cpu, "live_s": live_s,
            "abuser": abuser if abuse else None, "slow": slow_seen}


def row(label: str, r: dict) -> str:
    return (f"{label:>18} {r['connect_s']:>7.1f}s {r['delivered']:>10}/{r['expected']:<11} "
            f"{r['bad']:>15} {r['p50'] * 1000:>8.1f} {r['p99'] * 1000:>8.1f} {r['max'] * 1000:>8.1f} "
            f"{r['rss_peak']:>7.0f} {r['fds_peak']:>6} {r['cpu']:>5.1f}s/{r['live_s']:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", default="500,2000,5000")
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--abuse", type=int, default=500, help="subscribers of the abuse run (0: none)")
    parser.add_argument("--slow", type=int, default=1000, help="slow connections in the abuse run")
    parser.add_argument("--slow-per-address", type=int, default=50)
    args = parser.parse_args()
    root = Path(mkdtemp(prefix="bench-web-fanout-"))
    server = Server(root, {"APP_MODELS": "scripted", "APP_HEARTBEAT_SECONDS": "15",
                           "APP_SERVER_THREADS": "64"}).start()  # the default server settings
    try:
        base_rss = rss_mb(server.proc.pid)[0]
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        print(f"SSE fan-out on one live job ({args.events} output events {args.interval}s apart); "
              f"server RSS at start {base_rss:.0f} MB; {os.cpu_count()} CPUs shared with the clients")
        print(f"{'run':>18} {'connect':>8} {'delivered/expected':>22} {'lost/reordered':>15} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'RSS MB':>7} {'fds':>6} {'server CPU':>11}")
        clean = {}
        for n in [int(x) for x in args.subscribers.split(",") if x]:
            clean[n] = run_once(server, n, args.events, args.interval, args.procs)
            print(row(f"{n} clean", clean[n]), flush=True)
        if args.abuse:
            r = run_once(server, args.abuse, args.events, args.interval, args.procs, slow=args.slow,
                         slow_per_address=args.slow_per_address, abuse=True)
            print(row(f"{args.abuse} under abuse", r), flush=True)
            print(f"abuser (one address): {r['abuser']['held']} streams held, {r['abuser']['refused']} refused; "
                  f"{args.slow} slow connections ({args.slow_per_address} per address): "
                  f"{r['slow'].get('408', 0)} cut off with 408, {r['slow'].get('503', 0)} refused with 503, "
                  f"{r['slow'].get('closed', 0)} closed in all")
            if args.abuse in clean:
                base = clean[args.abuse]
                print(f"p99 under abuse / clean: {r['p99'] / base['p99']:.2f} "
                      f"({r['p99'] * 1000:.1f} ms vs {base['p99'] * 1000:.1f} ms)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
