"""The LLM agent's behaviour, on the local backend, with the real SDKs against a
fake API server through the relay: errors, limits, budgets, follow-ups.
(The same relay on Docker and Modal: tests/conformance/test_llm_relay.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.relay.host import ModelAccess, ModelRelay
from agent_sandbox.spec import Limits
from tests.conftest import REPO
from tests.fake_llm import FakeLLM, call, calls, error, finish, text
from tests.llm_support import CSV, RelayClient, llm_spec, new_key

PROVIDERS = ["openai", "anthropic"]


@pytest.fixture
def local():
    return get_backend("local")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_tool_call_is_answered_with_an_error(provider, local, tmp_path, recorder):
    bad = ("shell", '{"command": "ls /workspace"') if provider == "openai" else ("launch_rockets", {"n": 3})
    turns = [calls(bad), text("I think the data looks fine."), call("shell", command="ls /workspace"),
             finish("Listed the files.")]
    with FakeLLM(provider, turns, key=new_key()) as fake:
        result = local.run(llm_spec(tmp_path, fake), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    expected = "not a valid JSON object" if provider == "openai" else "unknown tool 'launch_rockets'"
    assert expected in fake.tool_results(1)                 # the model was told what was wrong
    assert "without calling a tool" in fake.tool_results(2)
    assert "plate.csv" in fake.tool_results(3)
    warnings = [e["data"]["message"] for e in recorder.of_type(ev.WARNING)]
    assert any("malformed" in w for w in warnings) and any("without calling a tool" in w for w in warnings)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_key_is_one_clear_line(provider, local, tmp_path, recorder):
    with FakeLLM(provider, [finish("never")], key=new_key()) as fake:
        spec = llm_spec(tmp_path, fake)
        spec.model_access.api_key = "sk-wrong-" + "x" * 20
        result = local.run(spec, recorder)
    assert result.status == ev.FAILED
    assert result.reason.startswith("the model endpoint refused the key (401)")
    assert "\n" not in result.reason and "Traceback" not in recorder.text()
    assert len(fake.requests) == 1   # a 401 is not retried
    assert "sk-wrong-" not in recorder.text()


def test_unknown_model_is_one_clear_line(local, tmp_path, recorder):
    with FakeLLM("openai", [error(404, "The model `test-model` does not exist")], key=new_key()) as fake:
        result = local.run(llm_spec(tmp_path, fake), recorder)
    assert result.status == ev.FAILED
    assert result.reason == "unknown model 'test-model' at the endpoint (404): The model `test-model` does not exist"


def test_unreachable_endpoint_is_one_clear_line(local, tmp_path, recorder):
    with FakeLLM("anthropic", [], key=new_key()) as fake:
        spec = llm_spec(tmp_path, fake, limits=Limits(run_timeout=120, command_timeout=60, idle_timeout=60,
                                                      model_retries=1))
    # The server is closed now: nothing listens on its port.
    result = local.run(spec, recorder)
    assert result.status == ev.FAILED
    assert result.reason.startswith("could not reach the model endpoint (after retries): could not reach "
                                    f"the model endpoint http://127.0.0.1:{fake.port}")
    assert "\n" not in result.reason


def test_step_limit_ends_the_run(local, tmp_path, recorder):
    turns = [call("shell", command=f"echo {i}") for i in range(10)]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        limits = Limits(run_timeout=60, command_timeout=30, idle_timeout=30, max_steps=3)
        result = local.run(llm_spec(tmp_path, fake, limits=limits), recorder)
    assert result.status == ev.FAILED and result.reason == "step limit of 3 reached"
    assert len(fake.requests) == 3
    assert "at most 3 tool calls" in fake.requests[0]["body"]["messages"][0]["content"]


def test_token_budget_is_counted_and_enforced_by_the_host(local, tmp_path, recorder):
    turns = [call("shell", command=f"echo {i}") for i in range(10)]
    with FakeLLM("anthropic", turns, key=new_key()) as fake:
        limits = Limits(run_timeout=60, command_timeout=30, idle_timeout=30, max_tokens=250)
        result = local.run(llm_spec(tmp_path, fake, limits=limits), recorder)
    # 120 tokens a call: the third call starts at 240 < 250 and is made; then the budget is spent.
    assert len(fake.requests) == 3
    assert result.status == ev.FAILED
    assert result.reason == "token budget of 250 tokens used up (360 used)"
    assert result.usage["total_tokens"] == 360
    assert fake.requests[2]["body"]["max_tokens"] == 10   # the last call may spend only what is left
    steps = [e["data"].get("step") for e in recorder.of_type(ev.USAGE)]
    assert steps == [1, 2, 3]


def test_a_server_without_usage_still_spends_the_budget(local, tmp_path, recorder):
    turns = [call("shell", command=f"echo {i}", usage=None) for i in range(10)]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        limits = Limits(run_timeout=60, command_timeout=30, idle_timeout=30, max_tokens=6000)
        result = local.run(llm_spec(tmp_path, fake, limits=limits), recorder)
    usage = recorder.of_type(ev.USAGE)
    # ~4 bytes a token of what was sent (the prompt, the tools, the conversation) and received
    assert usage and all(e["data"]["estimated"] and e["data"]["input_tokens"] > 500 for e in usage)
    assert result.reason.startswith("token budget of 6,000 tokens used up") and len(fake.requests) < 10


def test_context_stays_within_budget_with_huge_outputs(local, tmp_path, recorder):
    big = "python -c \"print('x' * 3_000_000)\""
    turns = [call("shell", command=big) for _ in range(6)] + [finish("done")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        limits = Limits(run_timeout=120, command_timeout=60, idle_timeout=60, max_context_chars=12000)
        result = local.run(llm_spec(tmp_path, fake, limits=limits), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    sizes = [len(json.dumps(r["body"]["messages"])) for r in fake.requests]
    assert max(sizes) < 12000 + 12000, sizes   # the budget plus the prompt and tool calls
    assert "characters cut" in fake.tool_results(1)
    assert "[output compacted to save context" in fake.tool_results(6)


def test_an_instruction_the_data_cannot_support_is_said_so(local, tmp_path, recorder):
    report = ("# Growth rates\n\nGrowth rates cannot be fitted: plate.csv has one OD reading per well and no "
              "time column, so there is no growth curve. Nothing was estimated.\n")
    turns = [call("shell", text="Check for a time column.", command="head -1 /workspace/plate.csv"),
             call("write_file", path="report.md", content=report),
             finish("Growth rates cannot be fitted: the data has no time column (one reading per well).",
                    status="failed")]
    with FakeLLM("anthropic", turns, key=new_key()) as fake:
        spec = llm_spec(tmp_path, fake, instructions="Fit growth rates per strain and plot them.")
        result = local.run(spec, recorder)
    first = fake.requests[0]["body"]
    assert "Never invent, simulate or guess data" in first["system"]
    assert "Fit growth rates per strain and plot them." in first["messages"][0]["content"][0]["text"]
    assert "well,strain,od" in fake.tool_results(1)
    assert result.status == ev.FAILED and "no time column" in result.reason
    assert (spec.results / "report.md").read_text() == report


def test_without_instructions_the_playbook_runs_first(local, tmp_path, recorder):
    with FakeLLM("openai", [finish("The standard analysis covers it.")], key=new_key()) as fake:
        result = local.run(llm_spec(tmp_path, fake, instructions=""), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    files = {f["path"] for f in result.manifest["files"]}
    # At least what the offline playbook gives.
    assert {"report.md", "report.html", "plate/plate.csv", "plate/plate.profile.json",
            "scripts/analyze_table.py"} <= files
    first = fake.requests[0]["body"]["messages"][1]["content"]
    assert "The standard analysis has already run" in first and "Analysed 1 of 1 uploaded file(s)" in first


def test_relay_forwards_only_the_api_path_with_the_jobs_model(tmp_path):
    key = new_key()
    with FakeLLM("openai", [finish("ok"), finish("ok")], key=key) as fake:
        events = []
        relay = ModelRelay(ModelAccess("openai", "test-model", fake.base_url, key), 0,
                           lambda t, d: events.append((t, d)))
        client = RelayClient(relay)
        assert client.ask(1, {"method": "POST", "path": "/files", "body": {}})["status"] == 403
        assert client.ask(2, {"method": "GET", "path": "/chat/completions", "body": {}})["status"] == 403
        reply = client.ask(3, {"method": "POST", "path": "/chat/completions",
                               "headers": {"authorization": "Bearer stolen", "x-forwarded-for": "1.2.3.4"},
                               "body": {"model": "gpt-most-expensive", "stream": True, "n": 5, "logprobs": True,
                                        "messages": [], "max_tokens": 100}})
        assert reply["status"] == 200
    sent = fake.requests[0]
    assert sent["body"] == {"model": "test-model", "messages": [], "max_tokens": 100}   # allow-listed, n dropped
    assert sent["headers"]["authorization"] == f"Bearer {key}" and "x-forwarded-for" not in sent["headers"]
    assert len(fake.requests) == 1 and events[-1][0] == ev.USAGE


def test_the_agent_process_never_holds_the_key(local, tmp_path, recorder):
    """Read the agent's memory from the host (as root) while it waits on a command."""
    if os.geteuid() != 0:
        pytest.skip("reading another process's memory needs root")
    key = new_key()
    found: list[bool] = []

    def scan_agent(event):
        recorder(event)
        if event["type"] == ev.OUTPUT and "waiting" in event["data"].get("text", ""):
            found.append(key.encode() in agent_memory())

    turns = [call("shell", command="echo waiting; sleep 2"), finish("done")]
    with FakeLLM("openai", turns, key=key) as fake:
        result = local.run(llm_spec(tmp_path, fake), scan_agent)
    assert result.status == ev.SUCCEEDED, result.reason
    assert found == [False]


def descends_from_us(pid: str) -> bool:
    for _ in range(6):   # bwrap (or a launcher) and the agent below it
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(pid) == os.getpid():
            return True
    return False


def agent_memory() -> bytes:
    """Every readable region of the agent processes this test started (not other tests' agents)."""
    chunks = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if (b"\0agent_sandbox.agent\0" not in cmdline or b"bwrap" in cmdline.split(b"\0")[0]
                    or not descends_from_us(pid)):
                continue
            with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
                for line in maps:
                    span, perms = line.split()[:2]
                    if "r" not in perms:
                        continue
                    start, end = (int(x, 16) for x in span.split("-"))
                    try:
                        mem.seek(start)
                        chunks.append(mem.read(end - start))
                    except (OSError, ValueError, OverflowError):
                        pass
        except OSError:
            continue
    assert chunks, "no agent process found"
    return b"".join(chunks)


def test_cli_follow_up_from_a_results_folder(tmp_path):
    data = tmp_path / "plate.csv"
    data.write_bytes(CSV)
    key = new_key()
    turns = [call("write_file", path="report.md", content="# First\nB > A\n"),
             finish("Wrote report.md comparing strains."),
             call("shell", command="ls /workspace /workspace/previous && cat /workspace/previous/report.md"),
             finish("Plotted strain B only.")]
    with FakeLLM("openai", turns, key=key) as fake:
        env = {**os.environ, **fake.env(), "AGENT_SANDBOX_MY_FILES": ""}

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--model", "openai:test-model",
                                   *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

        first = cli("--instructions", "compare strains", "--output", str(tmp_path / "r1"), str(data))
        assert first.returncode == 0, first.stderr
        second = cli("--instructions", "now plot only strain B", "--follow-up", str(tmp_path / "r1"),
                     "--output", str(tmp_path / "r2"))
        assert second.returncode == 0, second.stderr
    run = json.loads((tmp_path / "r1" / "manifest.json").read_text())["run"]
    assert run["summary"] == "Wrote report.md comparing strains." and run["inputs"] == [str(data)]
    task = fake.requests[2]["body"]["messages"][1]["content"]
    assert "now plot only strain B" in task
    assert "Wrote report.md comparing strains." in task and "/workspace/previous/" in task
    listing = fake.tool_results(3)
    assert "plate.csv" in listing and "# First" in listing   # same inputs, previous results
    assert key not in first.stdout + second.stdout + first.stderr + second.stderr
    assert re.search(r"tokens: 100 in, 20 out", first.stdout)
