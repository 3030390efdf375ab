"""Stopping and recovering, per backend (real server, real sandboxes; Modal through the emulator):

1. SIGTERM with 2 jobs running and 20 queued -> the process has exited (every sandbox
   ended, the running jobs recorded, the queued ones told they stay queued);
2. SIGKILL with 1 job running -> the next start has ended its sandbox and recorded the
   job `interrupted` (time from the restart to that);
3. the agent's lifeline: its host's end of stdout closed -> the agent and its command gone.

    .venv/bin/python bench/bench_shutdown.py [--runs 3] [--backends local,docker,modal-bwrap,modal-docker]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "web"), str(REPO)]
from web_helpers import Server  # noqa: E402

from frontend.store import JobStore  # noqa: E402
from tests.modal_support import EmulatorProcess  # noqa: E402

LONG = [{"kind": "shell", "command": "echo started; sleep 300"}]


def sigterm_seconds(backend: str, env: dict[str, str]) -> float:
    server = Server(Path(tempfile.mkdtemp(prefix="bench-shutdown-")), {"APP_WORKERS": "2",
                                                                        "APP_MAX_ACTIVE_PER_OWNER": "40", **env})
    server.start()
    try:
        client = server.client()
        jobs = [client.submit(LONG, backend=backend).json()["id"] for _ in range(22)]
        for job_id in jobs[:2]:
            client.wait_for_event(job_id, lambda f: f["event"] == "output", timeout=120)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(120)
        return time.monotonic() - started
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def recovery_seconds(backend: str, env: dict[str, str]) -> float:
    server = Server(Path(tempfile.mkdtemp(prefix="bench-recovery-")), env)
    server.start()
    again = None
    try:
        client = server.client()
        job_id = client.submit(LONG, backend=backend).json()["id"]
        client.wait_for_event(job_id, lambda f: f["event"] == "output", timeout=120)
        server.stop(signal.SIGKILL)
        store = JobStore(server.root / "outputs" / "jobs.sqlite3")
        started = time.monotonic()
        again = server.restart_on_same_data()
        while store.get_job(job_id)["status"] != "interrupted":
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        for process in (server, again):
            if process is not None:
                process.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def lifeline_seconds() -> float:
    workspace = Path(tempfile.mkdtemp(prefix="bench-lifeline-"))
    env = {**os.environ, "AGENT_SCRIPT": json.dumps(LONG)}
    proc = subprocess.Popen([sys.executable, "-m", "agent_sandbox.agent", "--workspace", str(workspace),
                             "--outputs", str(workspace / "out"), "--model", "scripted"], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    for line in proc.stdout:
        if b'"output"' in line:
            break
    started = time.monotonic()
    proc.stdout.close()
    proc.wait(30)
    took = time.monotonic() - started
    shutil.rmtree(workspace, ignore_errors=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="local,docker,modal-bwrap,modal-docker")
    args = parser.parse_args()
    for kind in args.backends.split(","):
        emulator = EmulatorProcess(runtime=kind.partition("-")[2]) if kind.startswith("modal") else None
        backend = kind.partition("-")[0]
        env = {"APP_BACKENDS": "local" if backend == "local" else f"local,{backend}",
               **(emulator.env() if emulator else {})}
        try:
            stop = [sigterm_seconds(backend, env) for _ in range(args.runs)]
            recover = [recovery_seconds(backend, env) for _ in range(args.runs)]
        finally:
            if emulator:
                emulator.stop()
        print(f"{kind:13s} SIGTERM (2 running, 20 queued) -> exit: median {statistics.median(stop):.2f}s, "
              f"max {max(stop):.2f}s | restart after SIGKILL -> job recovered: median "
              f"{statistics.median(recover):.2f}s, max {max(recover):.2f}s", flush=True)
    lifeline = [lifeline_seconds() for _ in range(args.runs)]
    print(f"lifeline: reader gone -> agent and command ended: median {statistics.median(lifeline) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
