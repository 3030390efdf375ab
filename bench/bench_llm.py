"""The model relay's cost, and many LLM jobs at once.

1. Overhead per model call: the same openai SDK call (a chat completion with
   the agent's tools and a growing conversation) made directly against a fake
   server that answers at once, and made through the relay as the agent makes
   it: SDK -> RelayTransport -> a `model_request` line on a child process's
   stdout -> the host's RunMonitor (its whole run lifecycle) -> ModelRelay (adds the key, counts tokens)
   -> the fake server -> a reply line on the child's stdin -> SDK. Medians of
   N calls each, side by side (target: <= 5 ms added).
2. 50 concurrent LLM jobs through the web app (real server, real local
   sandboxes, the real SDK inside) against a fake server with 1 s latency per
   call: all must finish; the web process's CPU time and peak RSS.

    .venv/bin/python bench/bench_llm.py [--calls 200] [--jobs 50] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "web"))

from web_helpers import Server  # noqa: E402

from agent_sandbox.backends.contract import RunMonitor, Streams, drive  # noqa: E402
from agent_sandbox.backends.process import ProcessSandbox  # noqa: E402
from agent_sandbox.outputs import DirectorySource  # noqa: E402
from agent_sandbox.relay.host import ModelAccess  # noqa: E402
from agent_sandbox.spec import Limits, RunSpec  # noqa: E402
from tests.fake_llm import FakeLLM, call, finish  # noqa: E402
from tests.llm_support import CSV  # noqa: E402

# The caller: N timed SDK calls, directly (argv[2] = base URL) or through the relay.
CALLER = r'''
import json, statistics, sys, time
import openai
from agent_sandbox import events as ev
from agent_sandbox.agent.models.openai import OPENAI_TOOLS
mode, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "relay":
    from agent_sandbox.relay.agent import PLACEHOLDER_KEY, RELAY_BASE_URL, RelayChannel, relay_http_client
    sys.stdout.reconfigure(line_buffering=True)
    channel = RelayChannel(ev.EventWriter(sys.stdout), sys.stdin)
    client = openai.OpenAI(api_key=PLACEHOLDER_KEY, base_url=RELAY_BASE_URL, http_client=relay_http_client(channel))
else:
    client = openai.OpenAI(api_key="sk-bench", base_url=target)
messages = [{"role": "system", "content": "You analyse data. " * 200}, {"role": "user", "content": "Go."}]
times = []
for i in range(n):
    t0 = time.perf_counter()
    client.chat.completions.create(model="bench", messages=messages, tools=OPENAI_TOOLS)
    times.append(time.perf_counter() - t0)
    messages.append({"role": "user", "content": f"observation {i}: " + "x" * 500})
print("TIMES " + json.dumps(times), file=sys.stderr)
'''


ROUNDS = 4


def caller_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def direct_calls(fake: FakeLLM, n: int) -> list[float]:
    proc = subprocess.run([sys.executable, "-c", CALLER, "direct", fake.base_url, str(n)],
                          capture_output=True, text=True, env=caller_env(), timeout=600)
    return parse_times(proc.stderr)


class CallerSandbox(ProcessSandbox):
    """The caller as a one-process sandbox, so the monitor's own lifecycle (stdin,
    relay, readers) carries its calls."""

    def __init__(self, n: int, outputs: Path):
        self.n, self.folder = n, outputs

    def start(self, run: RunMonitor) -> Streams:
        return self.spawn([sys.executable, "-c", CALLER, "relay", "", str(self.n)], caller_env())

    def outputs(self) -> DirectorySource:
        return DirectorySource(self.folder)


def relayed_calls(fake: FakeLLM, n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec(job_id="bench", workspace=Path(tmp), results=Path(tmp) / "results", model="openai:bench",
                       limits=Limits(max_tokens=0),
                       model_access=ModelAccess("openai", "bench", fake.base_url, "sk-bench"))
        lines: list[str] = []
        drive(CallerSandbox(n, Path(tmp)), RunMonitor(spec, lambda e: lines.append(e["data"].get("text", "")), None))
    return parse_times("\n".join(lines))


def parse_times(stderr: str) -> list[float]:
    for line in stderr.splitlines():
        if line.startswith("TIMES "):
            return json.loads(line[6:])
    raise RuntimeError(f"the caller failed:\n{stderr[-2000:]}")


def overhead(n: int) -> None:
    with FakeLLM("openai", [call("read_file", path="/workspace/x")] * (2 * n + 10), key="sk-bench") as fake:
        direct, relayed = [], []
        for _ in range(ROUNDS):   # interleaved, so neither side gets a quiet machine alone
            direct += direct_calls(fake, n // ROUNDS)
            relayed += relayed_calls(fake, n // ROUNDS)
    d, r = statistics.median(direct) * 1000, statistics.median(relayed) * 1000
    p90 = lambda xs: statistics.quantiles(xs, n=10)[-1] * 1000  # noqa: E731
    print(f"relay overhead per model call ({len(direct)} calls each, conversation growing to ~{n // ROUNDS * 0.5:.0f} KB)")
    print(f"  direct SDK call   median {d:6.2f} ms   p90 {p90(direct):6.2f} ms")
    print(f"  through the relay median {r:6.2f} ms   p90 {p90(relayed):6.2f} ms")
    print(f"  added             median {r - d:6.2f} ms   (target <= 5 ms)")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def concurrent_jobs(jobs: int, latency: float) -> None:
    # Each job makes 3 calls: look, write, finish (the answer depends on the job's own conversation).
    with FakeLLM("openai", [_job_turn] * (3 * jobs + 10), key="sk-bench", latency=latency) as fake, \
            tempfile.TemporaryDirectory() as root:
        server = Server(Path(root), {"APP_MODELS": "openai:bench", "APP_WORKERS": str(jobs),
                                     "APP_MAX_ACTIVE_PER_OWNER": str(jobs), "APP_MAX_ACTIVE_JOBS": str(jobs),
                                     # each run reserves its disk: 50 of the default 4 GB do not fit here
                                     "AGENT_SANDBOX_DISK_MB": "64",
                                     "AGENT_SANDBOX_MY_FILES": "", **fake.env()}).start()
        try:
            pid = server.proc.pid
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            client = server.client()

            def one(_):
                resp = client.submit(files={"plate.csv": CSV}, model="openai:bench", instructions="compare")
                job = resp.json()
                return client.events(job["id"], timeout=600)[-1]["data"]["status"]

            with ThreadPoolExecutor(jobs) as pool:
                statuses = list(pool.map(one, range(jobs)))
            wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
            rss = peak_rss_mb(pid)
        finally:
            server.stop()
    ok = statuses.count("succeeded")
    print(f"{jobs} concurrent LLM jobs, {latency:g} s per model call, 3 calls each "
          f"({len(fake.requests)} calls served)")
    print(f"  finished {ok}/{jobs} succeeded (others: {sorted(set(statuses) - {'succeeded'})}) in {wall:.1f} s")
    print(f"  web process: {cpu:.1f} s CPU ({cpu / wall * 100:.0f}% of one core), peak RSS {rss:.0f} MB")


def _job_turn(body: dict) -> dict:
    """The fake model's answer from what the job has done so far: look, write, finish."""
    done = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
    if done == 0:
        return call("shell", text="Look at the data.", command="head -3 /workspace/plate.csv")
    if done == 1:
        return call("write_file", path="report.md", content="# Report\nB > A\n")
    return finish("Wrote report.md.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    overhead(args.calls)
    if args.jobs:
        concurrent_jobs(args.jobs, args.latency)


if __name__ == "__main__":
    main()
