"""Submit -> first event, and whole-job time, on the Modal backend (through
the local Modal API emulator, its sandboxes as bubblewrap jails and, when an
engine and the agent-sandbox image are there, as Docker containers) beside the
local backend, same trivial job.

    .venv/bin/python bench/bench_modal.py [N]
    .venv/bin/python bench/bench_modal.py --concurrent 100 [--ticks 20]
    .venv/bin/python bench/bench_modal.py --concurrent 1000 --runtime replay

The job: the scripted model runs one `echo` and finishes, so what is measured
is the backend's overhead (image definition, mounts upload, sandbox creation,
exec, streaming, terminate + volume sync, output download), not the agent's
work. The first Modal run is reported apart: it uploads the agent package and
defines the image; later runs reuse both.

--concurrent N: one web process (APP_WORKERS=N) runs N Modal jobs at once
through the emulator (bubblewrap sandboxes: the cheapest runtime that runs them;
with --runtime replay, one recorded agent run played in every sandbox, so a
thousand fit on this machine;
each agent prints a tick a second for --ticks seconds, so the machine is not
the limit once they run), with one live SSE viewer per job. Prints whether
every job succeeded and every event arrived once and in order, submit -> the
agent's first event at the viewer, queued -> picked up by a worker, event
delivery latency (the viewer's receive time minus the agent's own timestamp),
and the web process's RSS and threads (bench/modal_scale.py).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_sandbox import events as ev  # noqa: E402
from agent_sandbox.backends import get_backend  # noqa: E402
from tests.conftest import make_spec  # noqa: E402
from tests.modal_support import PYTHON_SLIM, shared_emulator  # noqa: E402

JOB = [{"kind": "shell", "command": "echo hello > /outputs/hello.txt; echo done"}]


def one_run(backend) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = make_spec(Path(tmp), JOB)
        marks: dict[str, float] = {}
        t0 = time.perf_counter()

        def on_event(event: dict) -> None:
            now = time.perf_counter() - t0
            if event["type"] == ev.RUN_STARTED:   # the first event from inside the sandbox
                marks.setdefault("agent_started", now)
            if event["type"] == ev.OUTPUT:
                marks.setdefault("first_output", now)

        result = backend.run(spec, on_event)
        marks["whole_job"] = time.perf_counter() - t0
        if result.status != ev.SUCCEEDED or not (spec.results / "hello.txt").exists():
            raise SystemExit(f"{backend.name}: the job failed: {result.status} {result.reason}")
        return marks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="?", type=int, default=10, help="runs per backend")
    parser.add_argument("--concurrent", type=int, default=0, help="N Modal jobs at once through one web process")
    parser.add_argument("--ticks", type=int, default=20, help="with --concurrent: seconds each agent prints")
    parser.add_argument("--runtime", choices=("bwrap", "replay"), default="bwrap",
                        help="with --concurrent: the emulator's runtime (replay: a recorded agent run in each "
                             "sandbox, no process started)")
    args = parser.parse_args()
    if args.concurrent:
        from modal_scale import run_concurrent
        return run_concurrent(args.concurrent, args.ticks, args.runtime)
    emulator = shared_emulator()
    local, modal = get_backend("local"), get_backend("modal")
    cold = one_run(modal)
    columns = {"local": [one_run(local) for _ in range(args.runs)],
               "modal": [one_run(modal) for _ in range(args.runs)]}
    if docker_image_present():   # the emulator's Docker runtime: a container per sandbox
        emulator.use_runtime("docker")
        columns["modal/docker"] = [one_run(modal) for _ in range(args.runs)]
        emulator.use_runtime("bwrap")
    emulator.stop()

    print(f"Modal backend through the local emulator (sandboxes as bubblewrap jails, and as Docker "
          f"containers when available) vs the local backend; trivial scripted job, median of "
          f"{args.runs} runs; first event = the agent's run_started; ratio = x local")
    names = list(columns)
    print(f"{'metric':<36}" + "".join(f"{n:>14}" for n in names))
    for key, label in (("agent_started", "submit -> first event (s)"),
                       ("first_output", "submit -> first command output (s)"),
                       ("whole_job", "whole job (s)")):
        medians = {n: statistics.median(m[key] for m in columns[n]) for n in names}
        cells = [f"{medians[n]:.3f}" + ("" if n == "local" else f" ({medians[n] / medians['local']:.1f}x)")
                 for n in names]
        print(f"{label:<36}" + "".join(f"{c:>14}" for c in cells))
    print(f"first Modal run (cold: uploads agent_sandbox, defines the image): "
          f"first event {cold['agent_started']:.3f}s, whole job {cold['whole_job']:.3f}s")


def docker_image_present() -> bool:
    try:
        return subprocess.run(["docker", "image", "inspect", PYTHON_SLIM], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


if __name__ == "__main__":
    main()
