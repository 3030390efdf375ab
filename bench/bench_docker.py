"""Docker vs local sandbox: a trivial job through each backend, side by side:
time to the first event of the agent (run_started) and to the end of the run
(outputs collected). Prints medians over N runs, interleaved.

    .venv/bin/python bench/bench_docker.py [N]

Needs the engine and the image (scripts/docker-engine.sh).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.spec import Limits, RunSpec

SCRIPT = json.dumps([{"kind": "shell", "command": "echo hello > /outputs/hello.txt"},
                     {"kind": "finish", "message": "done"}])


def timed(backend, job: int) -> tuple[float, float]:
    """(seconds to the agent's first event, seconds to the end of run())."""
    root = Path(tempfile.mkdtemp())
    (root / "ws").mkdir()
    (root / "ws" / "data.csv").write_text("a,b\n1,2\n")
    spec = RunSpec(job_id=f"bench{job}", workspace=root / "ws", results=root / "results", model="scripted",
                   env={"AGENT_SCRIPT": SCRIPT}, limits=Limits(run_timeout=120))
    first = []
    t0 = time.perf_counter()

    def on_event(event):
        if event["type"] == ev.RUN_STARTED and not first:
            first.append(time.perf_counter() - t0)

    result = backend.run(spec, on_event)
    total = time.perf_counter() - t0
    assert result.ok and (spec.results / "hello.txt").exists(), result.reason
    return first[0], total


def main(n: int) -> None:
    backends = {"local (bwrap)": get_backend("local"), "docker": get_backend("docker")}
    backends["docker"].check_image()
    for backend in backends.values():  # warm caches (image layers, page cache) before measuring
        timed(backend, -1)
    rows = {name: [] for name in backends}
    for i in range(n):
        for name, backend in backends.items():
            rows[name].append(timed(backend, i))
    print(f"trivial job, docker vs local backend, median of {n} runs")
    med = {k: (statistics.median(f for f, _ in v), statistics.median(t for _, t in v)) for k, v in rows.items()}
    for name, (first, total) in med.items():
        print(f"  {name:14s} first event {first * 1000:7.1f} ms   whole run {total * 1000:7.1f} ms")
    local, docker = med["local (bwrap)"][1], med["docker"][1]
    print(f"  docker/local whole run: {docker / local:.2f}x  (+{(docker - local) * 1000:.0f} ms)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
