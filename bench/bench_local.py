"""Local sandbox overhead: a trivial job through `python -m agent_sandbox run`
(bubblewrap) vs the same agent command run directly without a sandbox, and the
time to the first event. Prints medians over N runs, measured side by side.

    .venv/bin/python bench/bench_local.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = json.dumps([{"kind": "shell", "command": "echo hello > /dev/null"},
                     {"kind": "finish", "message": "done"}])


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(seconds to the agent's first event, run_started; seconds to exit)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    while b'"run_started"' not in proc.stdout.readline():
        pass
    first = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    assert proc.returncode == 0, argv
    return first, time.perf_counter() - t0


def main(n: int) -> None:
    env = dict(os.environ, AGENT_SCRIPT=SCRIPT)
    data = Path(tempfile.mkdtemp()) / "data.csv"
    data.write_text("a,b\n1,2\n")
    rows = {"cli (bwrap)": [], "agent direct": []}
    for _ in range(n):  # interleaved so machine noise hits both alike
        out = Path(tempfile.mkdtemp()) / "out"
        rows["cli (bwrap)"].append(timed([sys.executable, "-m", "agent_sandbox", "run", "--json",
                                          "--model", "scripted", "--output", str(out), str(data)], env))
        ws, outs = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        (ws / "data.csv").write_text("a,b\n1,2\n")
        rows["agent direct"].append(timed([sys.executable, "-m", "agent_sandbox.agent",
                                           "--workspace", str(ws), "--outputs", str(outs),
                                           "--model", "scripted"], env))
    print(f"local sandbox overhead, median of {n} runs")
    med = {k: (statistics.median(f for f, _ in v), statistics.median(t for _, t in v)) for k, v in rows.items()}
    for name, (first, total) in med.items():
        print(f"  {name:14s} first event {first * 1000:7.1f} ms   whole run {total * 1000:7.1f} ms")
    ratio = med["cli (bwrap)"][1] / med["agent direct"][1]
    print(f"  ratio cli/direct whole run: {ratio:.2f}x  (+{(med['cli (bwrap)'][1] - med['agent direct'][1]) * 1000:.0f} ms)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
