"""N Modal jobs at once through one web process (bench_modal.py --concurrent N).

The emulator runs the sandboxes as bubblewrap jails (the cheapest runtime
that still runs every job in a sandbox of its own), or, with `--runtime
replay`, runs nothing and plays one recorded run of the agent in every
sandbox (recorded here first, from the real agent), so the client and web
side can be measured at a thousand jobs on this machine; the real `modal`
client and the real web server are in between either way. Each job's agent
prints a tick a second; one SSE viewer per job (non-blocking sockets on one
epoll loop, in a process of its own) checks it gets every event once, in
order, and the end.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "web"))
from bench_web_fanout import TS, Stream, read_streams  # noqa: E402
from web_helpers import Client, Server  # noqa: E402

from tests.modal_support import EmulatorProcess  # noqa: E402


class Viewer(Stream):
    """One live viewer of one job: what it received, and when."""

    def __init__(self, port: int, path: str, cookie: str):
        super().__init__(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                               f"Accept: text/event-stream\r\n\r\n".encode())
        self.ticks: list[tuple[float, float]] = []   # (agent's timestamp, received)
        self.first_agent_event = 0.0

    def frame(self, seq: int, event: bytes, data: bytes, now: float) -> None:
        self.ids.append(seq)
        if event == b"run_started" and not self.first_agent_event:
            self.first_agent_event = now
        if b'"text":"tick' in data:
            self.ticks.append((float(TS.search(data)[1]), now))


def watch(port: int, cookie: str, paths: list[tuple[str, str]], out) -> None:
    """All viewers on one epoll loop, until every stream ended."""
    viewers = {job_id: Viewer(port, path, cookie) for job_id, path in paths}
    read_streams(list(viewers.values()))
    out.put({job_id: {"ids": v.ids, "ticks": v.ticks, "first": v.first_agent_event, "ended": v.ended}
             for job_id, v in viewers.items()})


def sample_process(pid: int, stop: threading.Event, peaks: dict) -> None:
    """Peak RSS and threads; and the threads over time, to tell the creation burst from the runs."""
    peaks["series"] = []
    while not stop.is_set():
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        peaks["rss"] = max(peaks.get("rss", 0), int(fields["VmRSS"].split()[0]) / 1024)
        peaks["threads"] = max(peaks.get("threads", 0), int(fields["Threads"]))
        peaks["series"].append((time.time(), int(fields["Threads"])))
        time.sleep(0.2)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its waited-for children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def record_ticks(root: Path, ticks: int) -> Path:
    """One real run of the agent printing `ticks` ticks a second apart, recorded for the replay runtime."""
    workspace, outputs, recording = root / "recorded-ws", root / "recorded-out", root / "ticks.jsonl"
    workspace.mkdir(parents=True)
    (workspace / "data.csv").write_text("a,b\n1,2\n")
    script = [{"kind": "shell", "command": f"echo hello > {outputs}/hello.txt; "
                                           f"for i in $(seq 1 {ticks}); do echo tick $i; sleep 1; done"}]
    env = {**os.environ, "AGENT_SCRIPT": json.dumps(script), "MODAL_TASK_ID": "ta-recorded"}   # as on Modal
    subprocess.run([sys.executable, "-m", "modal_emulator.replay", "record", str(recording), "--outputs",
                    str(outputs), "--", sys.executable, "-m", "agent_sandbox.agent", "--workspace", str(workspace),
                    "--outputs", str(outputs), "--model", "scripted"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=ticks + 120)
    return recording


def run_concurrent(n: int, ticks: int, runtime: str = "bwrap") -> None:
    root = Path(mkdtemp(prefix="bench-modal-scale-"))
    if runtime == "replay":
        emulator = EmulatorProcess("replay", "--replay", str(record_ticks(root, ticks)), verbose=False)
    else:   # small disks: each sandbox's is reserved up front on the host
        emulator = EmulatorProcess("bwrap", "--sandbox-disk-mb", "64", verbose=False)
    server = Server(root, {**emulator.env(), "APP_BACKENDS": "modal", "APP_MODELS": "scripted",
                           "APP_WORKERS": str(n), "APP_MAX_ACTIVE_JOBS": str(2 * n),
                           "APP_MAX_ACTIVE_PER_OWNER": str(2 * n), "APP_SERVER_THREADS": "16", "APP_SERVER_MAX_THREADS": "48",
                           # one visitor from one address watches every job: its caps are not measured
                           "APP_MAX_ACTIVE_PER_ADDRESS": str(2 * n), "APP_MAX_STREAMS_PER_OWNER": str(2 * n),
                           "APP_MAX_STREAMS_PER_ADDRESS": str(2 * n), "APP_MAX_CONNECTIONS_PER_ADDRESS": "0",
                           "APP_HEARTBEAT_SECONDS": "15", "APP_LOG_LEVEL": "WARNING",
                           "AGENT_SANDBOX_MEMORY_MB": "256", "AGENT_SANDBOX_CPU": "0.5"}).start()
    try:
        pid = server.proc.pid
        time.sleep(2)   # start-up: the image prepared
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        start_rss, start_threads = int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])
        client = Client(server.base)
        cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
        script = [{"kind": "shell", "command": f"for i in $(seq 1 {ticks}); do echo tick $i; sleep 1; done"}]

        def submit(_):
            started = time.time()
            job = client.submit(script).json()
            return job["id"], started, job["urls"]["events"]

        peaks, stop = {}, threading.Event()
        sampler = threading.Thread(target=sample_process, args=(pid, stop, peaks), daemon=True)
        sampler.start()
        load_before = os.getloadavg()[0]
        cpu_before = cpu_seconds(pid)[0], cpu_seconds(emulator.proc.pid)
        t0 = time.time()
        with ThreadPoolExecutor(16) as pool:
            jobs = list(pool.map(submit, range(n)))
        submitted_s = time.time() - t0
        out = mp.get_context("fork").Queue()
        viewer = mp.get_context("fork").Process(target=watch, args=(server.port, cookie,
                                                                    [(j, path) for j, _, path in jobs], out))
        viewer.start()
        seen = out.get(timeout=ticks + 600)
        viewer.join()
        stop.set()
        sampler.join()
        wall = time.time() - t0
        web_cpu, (emu_cpu, sandboxes_cpu) = cpu_seconds(pid)[0], cpu_seconds(emulator.proc.pid)
        cpu = (web_cpu - cpu_before[0], emu_cpu - cpu_before[1][0], sandboxes_cpu - cpu_before[1][1])
        report(n, ticks, jobs, seen, client, peaks, (start_rss, start_threads), submitted_s, wall, load_before,
               runtime)
        print(f"  CPU over the run: web process (with the runner) {cpu[0]:.1f}s = {cpu[0] / n * 1000:.0f} ms per job, "
              f"emulator {cpu[1]:.1f}s, sandboxes {cpu[2]:.1f}s "
              f"(of {wall * (os.cpu_count() or 1):.0f} CPU-seconds; load {os.getloadavg()[0]:.1f} at the end)")
    finally:
        server.stop()
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(emulator.folder, ignore_errors=True)


def report(n, ticks, jobs, seen, client, peaks, start, submitted_s, wall, load_before, runtime) -> None:
    statuses, first, waits, lost, stages = {}, [], [], 0, []
    for job_id, submitted, _ in jobs:
        info = client.get(f"/api/jobs/{job_id}").json()
        statuses[info["status"]] = statuses.get(info["status"], 0) + 1
        got = seen[job_id]
        if not got["ended"] or got["ids"] != list(range(1, info["events"] + 1)) or len(got["ticks"]) != ticks:
            lost += 1
        first.append(got["first"] - submitted)
        stream = client.get(f"/api/jobs/{job_id}/events", stream=True, timeout=30)
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith(b"data: {")]
        queued = next(e["ts"] for e in events if e["type"] == "status" and e["data"]["status"] == "queued")
        picked = next(e["ts"] for e in events if e["type"] == "status" and e["data"]["status"] == "running")
        created = next(e["ts"] for e in events if e["type"] == "status"
                       and e["data"]["message"].startswith("Modal sandbox "))
        agent = next(e["ts"] for e in events if e["type"] == "run_started")
        waits.append(picked - queued)
        stages.append((created - submitted, agent - created))
    all_started = max(got["first"] for got in seen.values())
    latencies = [recv - ts for got in seen.values() for ts, recv in got["ticks"]]
    steady = [recv - ts for got in seen.values() for ts, recv in got["ticks"] if ts > all_started]
    sandboxes = "a recorded agent run replayed in each sandbox" if runtime == "replay" else "bubblewrap sandboxes"
    print(f"{n} Modal jobs at once through one web process (APP_WORKERS={n}), emulator with {sandboxes}, "
          f"{ticks} ticks 1 s apart each, one live viewer per job; {os.cpu_count()} CPUs "
          f"(load {load_before:.1f} before); submitted in {submitted_s:.1f}s, all over in {wall:.1f}s")
    print(f"  outcome: {statuses}; jobs with a lost, repeated or missing event: {lost}")
    print(f"  submit -> the agent's first event at its viewer: p50 {pct(first, .5):.2f}s  p99 {pct(first, .99):.2f}s")
    print(f"  ... of which submit -> sandbox created: p50 {pct([a for a, _ in stages], .5):.2f}s  "
          f"p99 {pct([a for a, _ in stages], .99):.2f}s; created -> the agent's first event: "
          f"p50 {pct([b for _, b in stages], .5):.2f}s  p99 {pct([b for _, b in stages], .99):.2f}s")
    print(f"  queued -> picked up by a worker: max {max(waits) * 1000:.0f} ms (p50 {pct(waits, .5) * 1000:.0f} ms)")
    print(f"  event delivery (agent -> viewer), all {len(latencies)} ticks: p50 {pct(latencies, .5) * 1000:.0f} ms  "
          f"p99 {pct(latencies, .99) * 1000:.0f} ms  max {max(latencies) * 1000:.0f} ms")
    print(f"  ... once every job was running ({len(steady)} ticks): p50 {pct(steady, .5) * 1000:.0f} ms  "
          f"p99 {pct(steady, .99) * 1000:.0f} ms")
    running = [count for at, count in peaks["series"] if all_started < at < all_started + ticks / 2]
    print(f"  web process (web + runner): RSS {start[0]:.0f} MB at start, peak {peaks['rss']:.0f} MB; threads "
          f"{start[1]} at start, peak {peaks['threads']} (while sandboxes were created: the client hashes each "
          f"workspace in a pool of its own), {max(running, default=0)} once all ran")
