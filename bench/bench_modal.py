"""Submit -> first event, and whole-job time, on the Modal backend (through
the local Modal API emulator) beside the local backend, same trivial job.

    .venv/bin/python bench/bench_modal.py [N]

The job: the scripted model runs one `echo` and finishes, so what is measured
is the backend's overhead (image definition, mounts upload, sandbox creation,
exec, streaming, terminate + volume sync, output download), not the agent's
work. The first Modal run is reported apart: it uploads the agent package and
defines the image; later runs reuse both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_sandbox import events as ev  # noqa: E402
from agent_sandbox.backends import get_backend  # noqa: E402
from tests.conftest import make_spec  # noqa: E402
from tests.modal_support import shared_emulator  # noqa: E402

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
    args = parser.parse_args()
    emulator = shared_emulator()
    local, modal = get_backend("local"), get_backend("modal")
    cold = one_run(modal)
    samples = {"local": [one_run(local) for _ in range(args.runs)],
               "modal": [one_run(modal) for _ in range(args.runs)]}
    emulator.stop()

    print(f"Modal backend (local emulator, bubblewrap) vs local backend; trivial scripted job, "
          f"median of {args.runs} runs; first event = the agent's run_started")
    print(f"{'metric':<34}{'local':>10}{'modal':>10}{'ratio':>9}")
    for key, label in (("agent_started", "submit -> first event (s)"),
                       ("first_output", "submit -> first command output (s)"),
                       ("whole_job", "whole job (s)")):
        lo = statistics.median(m[key] for m in samples["local"])
        mo = statistics.median(m[key] for m in samples["modal"])
        print(f"{label:<34}{lo:>10.3f}{mo:>10.3f}{mo / lo:>8.2f}x")
    print(f"first Modal run (cold: uploads agent_sandbox, defines the image): "
          f"run_started {cold['agent_started']:.3f}s, whole job {cold['whole_job']:.3f}s")


if __name__ == "__main__":
    main()
