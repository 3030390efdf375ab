"""Issue 26, the model channel, as an attacker inside the sandbox would use it (the
frames a subverted agent can write on its stdout, through the host's real monitor
and relay) against model servers on 127.0.0.1; each bound is measured:

F4  a flood of model requests: threads in this (the web) process, upstream calls;
F7  the token budget: tokens spent against it, whatever the requests ask for;
F17 an endpoint that echoes the key: what reaches the sandbox and the log;
F21 a deeply nested JSON line, and a follow-up's summary over argv's limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox.backends.contract import drive
from agent_sandbox.backends.monitor import RunMonitor
from agent_sandbox.backends.process import ProcessSandbox
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.relay import wire
from agent_sandbox.relay.host import ModelAccess
from agent_sandbox.spec import Limits, RunSpec
from tests.fake_llm import FakeLLM, echo_error, echo_text, error, text
from tests.llm_support import RelayClient, new_key


class Feed:
    """The host's side as a backend wires it: a RunMonitor whose relay answers into `client`,
    fed the lines a sandbox writes on its stdout."""

    def __init__(self, tmp_path: Path, fake: FakeLLM, max_tokens: int = 0):
        spec = RunSpec(job_id="hostile", workspace=tmp_path, results=tmp_path / "results",
                       model=f"{fake.provider}:test-model", limits=Limits(max_tokens=max_tokens),
                       model_access=ModelAccess(fake.provider, "test-model", fake.base_url, fake.key))
        self.stored: list[dict] = []
        self.monitor = RunMonitor(spec, self.stored.append, None)
        self.client = RelayClient(self.monitor.relay)

    def send(self, call_id: int, request: dict) -> None:
        for data in wire.frames(call_id, request):
            self.monitor.feed(ev.encode(ev.make_event(ev.MODEL_REQUEST, data)) + "\n")

    def ask(self, call_id: int, request: dict, timeout: float = 30) -> dict:
        self.send(call_id, request)
        return self.client.wait(call_id, timeout)


def chat(content: str = "hello", **extra) -> dict:
    return {"method": "POST", "path": "/chat/completions", "timeout": 30,
            "body": {"model": "gpt-most-expensive", "messages": [{"role": "user", "content": content}], **extra}}


def test_f4_a_flood_of_model_requests_costs_no_thread_and_no_call(tmp_path):
    with FakeLLM("openai", [text("ok")], key=new_key(), latency=3) as fake:
        feed = Feed(tmp_path, fake)
        before = peak = threading.active_count()
        started = time.monotonic()
        for call_id in range(1, 3001):
            feed.send(call_id, chat())
            peak = max(peak, threading.active_count())
        flooded = time.monotonic() - started
        replies = [feed.client.wait(call_id) for call_id in range(1, 3001)]
    refused = [r for r in replies if r.get("status") == 429]
    print(f"F4: 3,000 requests in {flooded:.2f}s: {peak - before} more threads at most (before: one per "
          f"request, 3,066), {len(fake.requests)} upstream call, {len(refused)} refused")
    assert len(fake.requests) == 1 and replies[0]["status"] == 200 and len(refused) == 2999
    assert peak - before <= 2   # the one call in flight (and the fake server's handler for it)
    assert "one model call at a time" in json.loads(refused[0]["body"])["error"]["message"]
    assert not [e for e in feed.stored if e["type"] == ev.MODEL_REQUEST]   # never stored
    assert sum(1 for e in feed.stored if e["type"] == ev.WARNING) == 1    # said once, not 2,999 times


def test_f7_the_budget_holds_whatever_the_requests_ask(tmp_path):
    budget = 5000
    long_answer = text("x" * 400_000)   # a server that would answer at length if it could
    with FakeLLM("openai", [long_answer] * 50, key=new_key(), metered=True) as fake:
        feed = Feed(tmp_path, fake, max_tokens=budget)
        asks = [chat(n=8), chat(max_tokens=10**9, logprobs=True, stream=True), chat(max_completion_tokens=50_000),
                chat("y" * 8000, n=3, top_logprobs=20)]
        answers = [feed.ask(i + 1, asks[i % len(asks)]) for i in range(40)]
        flood = [feed.ask(100 + i, chat(n=50)) for i in range(20)]   # after the budget is gone
    usage = feed.monitor.relay.usage
    largest_input = max(r["size"] for r in fake.requests) // 4
    print(f"F7: budget {budget:,}, spent {usage['total_tokens']:,} in {usage['calls']} calls "
          f"(before: 164,410); the largest input {largest_input:,}")
    assert usage["total_tokens"] <= budget + largest_input
    for request in fake.requests:
        body = request["body"]
        assert set(body) <= {"model", "messages", "max_tokens"} and body["model"] == "test-model"
        assert 0 < body["max_tokens"] <= budget     # always a cap, never more than what is left
    assert [a["status"] for a in answers].count(402) >= 35 and all(f["status"] == 402 for f in flood)
    assert feed.monitor.relay.refused.startswith("token budget of 5,000 tokens used up")


def test_f17_an_echoing_endpoint_gives_neither_the_sandbox_nor_the_log_the_key(tmp_path):
    key = new_key()
    huge = error(400, "x" * 1_000_000 + key)
    with FakeLLM("openai", [echo_error(400), echo_text(), huge], key=key) as fake:
        feed = Feed(tmp_path, fake)
        replies = [feed.ask(i, chat()) for i in (1, 2, 3)]
    for reply in replies:
        assert key not in json.dumps(reply)
    errors = [json.loads(replies[i]["body"])["error"] for i in (0, 2)]
    assert all(len(e["message"]) <= 300 for e in errors) and "bad request" in errors[0]["message"]
    assert "[redacted]" in json.loads(replies[1]["body"])["choices"][0]["message"]["content"]
    log = json.dumps(feed.stored)
    warnings = [e["data"]["message"] for e in feed.stored if e["type"] == ev.WARNING]
    assert key not in log and len(warnings) == 2 and all(len(w) < 400 for w in warnings)
    print(f"F17: upstream error bodies of {len(huge['message']):,} characters reach the sandbox as "
          f"{max(len(e['message']) for e in errors)}, the key redacted (before: the whole body; 300 characters "
          "of it, the key included, in the log)")


DEEP_AGENT = r"""
import json, sys
print('{"v":1,"type":"message","data":{"text":' + "[" * 200000 + "]" * 200000 + "}}", flush=True)
print("[" * 500000, flush=True)
print(json.dumps({"v": 1, "seq": 3, "ts": 0, "type": "run_finished",
                  "data": {"status": "succeeded", "reason": "", "steps": 0, "summary": "still here"}}), flush=True)
"""


class DeepSandbox(ProcessSandbox):
    """A sandbox whose 'agent' writes nested JSON lines, then finishes as the agent would."""

    def __init__(self, outputs: Path):
        self.outputs_folder = outputs

    def start(self, run) -> object:
        return self.spawn([sys.executable, "-c", DEEP_AGENT], {"PATH": "/usr/bin:/bin"})

    def poll(self):
        return self.proc.poll()

    def wait(self):
        return self.proc.wait()

    def outputs(self):
        self.outputs_folder.mkdir(exist_ok=True)
        return DirectorySource(self.outputs_folder)


def test_f21_any_json_depth_leaves_the_reader_standing(tmp_path, recorder):
    spec = RunSpec(job_id="deep", workspace=tmp_path, results=tmp_path / "results",
                   limits=Limits(run_timeout=60, idle_timeout=60))
    result = drive(DeepSandbox(tmp_path / "out"), RunMonitor(spec, recorder, None))
    assert result.status == ev.SUCCEEDED and result.summary == "still here"
    raw = recorder.of_type(ev.RAW)
    assert len(raw) == 2 and raw[0]["data"]["text"].startswith('{"v":1,"type":"message"')
    assert not recorder.of_type(ev.MESSAGE)   # the nested line is kept as text, not as an event


def test_f21_a_follow_ups_summary_travels_as_a_file_not_in_argv(tmp_path):
    from agent_sandbox.followup import add_previous
    from agent_sandbox.manifest import record_run, write_manifest
    results = tmp_path / "r1"
    results.mkdir()
    write_manifest(results, {"files": [], "skipped": []})
    record_run(results, {"instructions": "first", "model": "openai:m", "status": "succeeded",
                         "summary": "s" * 300_000})
    workspace = tmp_path / "ws"
    workspace.mkdir()
    add_previous(workspace, results)
    spec = RunSpec(job_id="f", workspace=workspace, results=tmp_path / "r2", model="openai:m",
                   previous_summary=(workspace / ".previous.md").read_text())
    argv = spec.agent_args()
    assert sum(len(a) for a in argv) < 5000     # nothing near the 128 KB of one argument
    done = subprocess.run(["/bin/echo", *argv], capture_output=True, timeout=10)
    assert done.returncode == 0                 # E2BIG before
    assert len((workspace / ".previous.md").read_text()) > 50_000
