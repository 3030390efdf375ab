"""The coding agent's loop against model servers on 127.0.0.1 (the real openai and
anthropic SDKs inside the sandbox, the host's relay between), one test per point
of issue 21, each on the local backend and on Modal through the emulator:
output capture, compaction, the output cap, every kind of reply, the step budget,
the channel's size and time limits, secrets, and what the model is told of the data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from agent_sandbox import events as ev
from agent_sandbox.agent.models import provider_notice
from agent_sandbox.backends import get_backend
from agent_sandbox.paths import PREVIOUS_SUMMARY, REFERENCE_LIST
from agent_sandbox.relay.host import ModelAccess
from agent_sandbox.spec import Limits
from tests.conftest import REPO
from tests.fake_llm import FakeLLM, call, cut, echo_error, error, finish, refusal, text
from tests.llm_support import CSV, all_text_under, llm_spec, new_key


@pytest.fixture(params=["local", "modal"])
def backend(request):
    if request.param == "modal":
        from tests.modal_support import shared_emulator
        emulator = shared_emulator()
        yield get_backend("modal")
        assert not emulator.running_sandboxes()
    else:
        yield get_backend("local")


def limits(**kw) -> Limits:
    return Limits(**{"run_timeout": 180, "command_timeout": 60, "idle_timeout": 90, "model_retries": 2, **kw})


def stored(recorder) -> str:
    return json.dumps(recorder.events)


# -- 1. output capture ---------------------------------------------------------------

PROGRESS_THEN_FAIL = ("for i in range(2000):\n    print(f'step {i:05d} of the fit ' + 'x' * 8)\n"
                      "raise ValueError('the real problem is at the end')")


def tail_of_the_whole_output(body: dict) -> dict:
    path = re.search(r"is in (/\S+): read it", json.dumps(body)).group(1)
    return call("shell", command=f"tail -n 4 {path}")


def test_a_failing_commands_end_reaches_the_model(backend, tmp_path, recorder):
    turns = [call("python", code=PROGRESS_THEN_FAIL), tail_of_the_whole_output, finish("Found it.")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits()), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    seen = fake.tool_results(1)
    assert "ValueError: the real problem is at the end" in seen and "step 00000 of the fit" in seen
    assert "characters cut" in seen or "characters elided" in seen
    assert re.search(r"the whole output \(\d[\d,]* characters\) is in /tmp/", seen)
    # The file is there for the model: its end read back with tail.
    assert "step 01999 of the fit" in fake.tool_results(2) and "ValueError" in fake.tool_results(2)
    # The log has the end too.
    log = "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))
    assert "ValueError: the real problem is at the end" in log and "characters not shown" in log


# -- 2. compaction -----------------------------------------------------------------

def test_requests_stay_bounded_after_a_300k_reply(backend, tmp_path, recorder):
    turns = [call("shell", text="Thinking aloud. " + "a" * 300_000, command="echo hi")]
    turns += [call("python", code=f"print('try {i}'); 1/0") for i in range(4)] + [finish("done")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits()), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    sizes = [r["size"] for r in fake.requests]
    print("request bytes after a 300k-character reply:", sizes)
    assert max(sizes[1:]) < 40_000, sizes     # the prompt and tools (~6 KB) and a bounded conversation
    latest = fake.tool_results(5)
    assert "try 3" in latest and "ZeroDivisionError" in latest   # the latest error is whole
    assert len(stored(recorder)) < 120_000   # the log shows the reply cut too


# -- 3. the output cap and the budget -----------------------------------------------

@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_call_has_an_output_cap_within_the_budget(provider, backend, tmp_path, recorder):
    turns = [call("shell", command="echo 1"), call("shell", text="b" * 300_000, command="echo 2")]
    turns += [call("shell", command=f"echo {i}") for i in range(3, 30)]
    with FakeLLM(provider, turns, key=new_key(), metered=True) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits(max_tokens=5000)), recorder)
    assert result.status == ev.FAILED and result.reason.startswith("token budget of 5,000 tokens used up")
    spent, budget = 0, 5000
    for request, usage in zip(fake.requests, recorder.of_type(ev.USAGE)):
        cap = request["body"]["max_tokens"]
        assert 0 < cap <= budget - spent     # lowered to what is left, before the call
        spent = usage["data"]["job_tokens"]
    largest_input = max(e["data"]["input_tokens"] for e in recorder.of_type(ev.USAGE))
    print(f"{provider}: {result.usage['total_tokens']:,} tokens spent with --max-tokens 5000, "
          f"{len(fake.requests)} calls")
    assert result.usage["total_tokens"] <= budget + largest_input


# -- 4. every kind of reply ----------------------------------------------------------

@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_refusals_are_shown_and_repeated_ones_end_the_run(provider, backend, tmp_path, recorder):
    turns = [refusal("I cannot analyse this."), text(""), call("shell", command="echo go on"),
             refusal("No."), refusal("No."), refusal("Still no.")]
    with FakeLLM(provider, turns, key=new_key(), strict=True) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits()), recorder)
    warnings = [e["data"]["message"] for e in recorder.of_type(ev.WARNING)]
    assert "the model refused: I cannot analyse this." in warnings
    assert any("without calling a tool" in w for w in warnings)
    # The strict server took every request: never an empty assistant message.
    assert "go on" in fake.tool_results(3) and len(fake.requests) == 6
    assert result.status == ev.FAILED and result.reason == "the model refused 3 times in a row: Still no."


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_reply_cut_by_the_output_limit_is_told_to_continue_smaller(provider, backend, tmp_path, recorder):
    turns = [cut("write_file", '{"path": "report.md", "content": "# Report\\nA very long'),
             call("write_file", path="report.md", content="# Report\n"), finish("Wrote it in parts.")]
    with FakeLLM(provider, turns, key=new_key(), strict=True) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits()), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert "cut at the output-token limit" in fake.tool_results(1) and "smaller pieces" in fake.tool_results(1)
    assert any("cut by the output-token limit" in e["data"]["message"] for e in recorder.of_type(ev.WARNING))
    assert (tmp_path / "results" / "report.md").read_text() == "# Report\n"


OVERFLOW = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."


def test_a_context_overflow_compacts_harder_and_retries_once(backend, tmp_path, recorder):
    turns = [call("shell", command="python -c \"print('y' * 30000)\""), call("shell", command="echo next"),
             error(400, OVERFLOW, code="context_length_exceeded"), finish("Done after compacting.")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits(model_retries=0)), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert fake.requests[3]["size"] < fake.requests[2]["size"] - 5000
    assert "next" in fake.tool_results(3)      # the latest result survives the harder compaction
    assert any("compacted to" in e["data"]["message"] for e in recorder.of_type(ev.WARNING))
    # Twice in a row: the run ends, saying what to change.
    turns = [error(400, OVERFLOW, code="context_length_exceeded")] * 2
    with FakeLLM("openai", turns, key=new_key()) as fake:
        result = backend.run(llm_spec(tmp_path / "again", fake, limits=limits(model_retries=0)), recorder)
    assert result.status == ev.FAILED and "lower AGENT_SANDBOX_MAX_CONTEXT_CHARS" in result.reason
    assert len(fake.requests) == 2


# -- 5. the step budget --------------------------------------------------------------

def test_the_model_sees_its_steps_and_its_last_one_is_for_the_summary(backend, tmp_path, recorder):
    turns = [call("shell", command=f"echo {i}") for i in range(3)] + [call("shell", command="echo one more")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        result = backend.run(llm_spec(tmp_path, fake, limits=limits(max_steps=4)), recorder)
    notes = [fake.tool_results(i) for i in range(4)]
    assert "[4 steps left]" in notes[0] and "Only 3 steps left" in notes[1] and "Only 2 steps left" in notes[2]
    assert "This is your last step: call finish now" in notes[3]
    last = fake.requests[3]["body"]
    assert last["tool_choice"] == {"type": "function", "function": {"name": "finish"}}
    assert "tool_choice" not in fake.requests[2]["body"]
    # This model ignored it: the run still ends with a summary, and ran nothing more.
    assert result.status == ev.FAILED and result.reason == "step limit of 4 reached"
    assert result.summary == "step limit of 4 reached"
    assert "one more" not in stored(recorder)


def test_steps_the_agent_takes_on_its_own_are_not_the_models(backend, tmp_path, recorder):
    turns = [call("shell", command="ls /outputs"), finish("Reviewed the standard analysis.")]
    with FakeLLM("anthropic", turns, key=new_key()) as fake:
        result = backend.run(llm_spec(tmp_path, fake, instructions="", limits=limits(max_steps=2)), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert result.summary == "Reviewed the standard analysis." and len(fake.requests) == 2
    assert "Only 2 steps left" in fake.tool_results(0)
    assert fake.requests[1]["body"]["tool_choice"] == {"type": "tool", "name": "finish"}
    assert recorder.of_type(ev.RUN_FINISHED)[-1]["data"]["steps"] > 2   # the playbook's steps ran too


# -- 6. the channel: any size up to its limit, never stored, a whole call's timeout ----

def test_the_channel_carries_large_requests_and_replies(backend, tmp_path, recorder):
    marker = "END-OF-A-LARGE-SUMMARY"
    turns = [call("write_file", path="big.txt", content="z" * 3_000_000), finish("Wrote a large file.")]
    with FakeLLM("anthropic", turns, key=new_key()) as fake:
        spec = llm_spec(tmp_path, fake, limits=limits(max_context_chars=40_000_000))
        (spec.workspace / PREVIOUS_SUMMARY).write_text("earlier work. " * 180_000 + marker)
        result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert fake.requests[0]["size"] > 2_500_000 and marker in fake.tool_results(0)   # > 1 MiB lines: chunked
    assert (spec.results / "big.txt").stat().st_size == 3_000_000                      # the reply too
    log = stored(recorder)
    assert marker not in log and "model_request" not in log and len(log) < 200_000    # never stored


def test_a_model_call_ends_within_its_timeout(backend, tmp_path, recorder):
    with FakeLLM("openai", [finish("too late")], key=new_key(), latency=6) as fake:
        spec = llm_spec(tmp_path, fake, limits=limits(model_timeout=2, model_retries=3))
        result = backend.run(spec, recorder)
    error_event = recorder.of_type(ev.ERROR)[-1]
    assert result.status == ev.FAILED
    assert result.reason == "the model call took longer than AGENT_SANDBOX_MODEL_TIMEOUT (2s)"
    assert len(fake.requests) == 1      # not retried once its time is up
    print(f"a model call with AGENT_SANDBOX_MODEL_TIMEOUT=2 ended after {error_event['ts'] - fake.requests[0]['at']:.1f}s")


# -- 7. secrets and checks before the start -----------------------------------------

@pytest.mark.parametrize("with_key", [True, False])
def test_the_key_and_url_credentials_never_reach_the_sandbox_or_the_log(with_key, backend, tmp_path, recorder):
    """An endpoint that echoes what it got (the key's header, or without a key the URL's
    credentials as Basic auth) in its error body."""
    key, password = new_key() if with_key else "", "pw-" + new_key()[-12:]
    with FakeLLM("openai", [echo_error(400)], key=key) as fake:
        spec = llm_spec(tmp_path, fake, limits=limits(model_retries=0))
        spec.model_access = ModelAccess("openai", "test-model", f"http://analyst:{password}@127.0.0.1:{fake.port}/v1",
                                        key)
        result = backend.run(spec, recorder)
    sent = fake.requests[0]["headers"]["authorization"]
    assert sent == f"Bearer {key}" if with_key else sent.startswith("Basic YW5hbHlzd")
    assert result.status == ev.FAILED and result.reason.startswith("the model endpoint answered 400: bad request:")
    assert "\n" not in result.reason and len(result.reason) < 400
    everything = stored(recorder) + result.reason + all_text_under(spec.results).decode(errors="replace")
    for secret in (key or password, password, "YW5hbHlzd"):   # the key, the URL's password, its Basic auth form
        assert secret not in everything


@pytest.mark.parametrize("access, expected", [
    (("openai", "https://api.openai.com/v1", ""), "OPENAI_API_KEY is not set"),
    (("anthropic", "http//127.0.0.1:9", "k-123"), "ANTHROPIC_BASE_URL='http//127.0.0.1:9' is not a valid endpoint"),
    (("openai", "http://u:secretpw@127.0.0.1:99999/v1", "k-123"), "OPENAI_BASE_URL is not a valid URL"),
])
def test_a_missing_key_or_a_malformed_endpoint_is_refused_before_the_start(access, expected, backend, tmp_path,
                                                                           recorder):
    with FakeLLM("openai", []) as fake:
        spec = llm_spec(tmp_path, fake)
    provider, url, key = access
    spec.model_access = ModelAccess(provider, "m", url, key)
    result = backend.run(spec, recorder)
    assert result.status == ev.ERROR and result.reason.startswith(expected) and "\n" not in result.reason
    assert [e["type"] for e in recorder.events] == [ev.ERROR, ev.RESULT]   # no sandbox was made
    assert "secretpw" not in stored(recorder)


def test_a_bad_model_setting_is_one_line_before_the_start(tmp_path):
    data = tmp_path / "plate.csv"
    data.write_bytes(CSV)
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    for name, value in (("AGENT_SANDBOX_MODEL_RETRIES", "many"), ("AGENT_SANDBOX_MODEL_TIMEOUT", "0")):
        env = {**os.environ, name: value, "TMPDIR": str(own_tmp), "OPENAI_API_KEY": "k-123"}
        done = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--model", "openai:m", "--output",
                               str(tmp_path / "out"), str(data)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"error: {name}={value!r} is not valid")
    assert not list(own_tmp.iterdir())   # nothing prepared, no sandbox


# -- 8. what the model is told of the data -----------------------------------------------

def workbook() -> bytes:
    import io

    import pandas as pd
    out = io.BytesIO()
    with pd.ExcelWriter(out) as book:
        pd.DataFrame({"time_h": [0, 1], "A1": [0.1, 0.2]}).to_excel(book, sheet_name="raw", index=False)
        pd.DataFrame({"well": ["A1"], "strain": ["wt"]}).to_excel(book, sheet_name="layout", index=False)
    return out.getvalue()


def test_the_first_message_describes_each_upload_and_marks_reference_material(backend, tmp_path, recorder):
    files = {"plate.csv": CSV, "growth.xlsx": workbook(), "protocol.md": b"# Protocol\nOD600 every hour.\n"}
    with FakeLLM("openai", [finish("Looked.")], key=new_key()) as fake:
        spec = llm_spec(tmp_path, fake, files=files, limits=limits())
        (spec.workspace / REFERENCE_LIST).write_text("protocol.md\n")
        result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    first = fake.tool_results(0)
    uploads, _, reference = first.partition("Reference material")
    assert "/workspace/plate.csv (55 bytes): CSV table" in uploads
    assert re.search(r"columns \(3\): well \(\w+\), strain \(\w+\), od \(float64\)", uploads)
    assert "A1" in uploads and "0.1" in uploads                               # a few rows
    assert "Excel workbook" in uploads and "sheets (2): raw, layout" in uploads
    assert "protocol.md" not in uploads and "/workspace/protocol.md" in reference
    assert "not data to analyse unless asked" in reference


def test_a_follow_up_of_a_follow_up_sees_the_whole_chain(backend, tmp_path):
    data = tmp_path / "plate.csv"
    data.write_bytes(CSV)
    long_summary = "First summary. " + "s" * 200_000     # over argv's 128 KB for one argument
    turns = [call("write_file", path="report.md", content="# First\n"), finish(long_summary),
             call("write_file", path="report.md", content="# Second\n"), finish("Second done."),
             call("shell", command="cat /workspace/previous/report.md /workspace/previous-2/report.md"),
             finish("Third done.")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        env = {**os.environ, **fake.env(), "AGENT_SANDBOX_MY_FILES": "", "AGENT_SANDBOX_MODEL_RETRIES": "1"}

        def cli(out: str, *args: str) -> subprocess.CompletedProcess:
            done = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--backend", backend.name,
                                   "--model", "openai:test-model", "--output", str(tmp_path / out), *args],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            return done

        first = cli("r1", "--instructions", "compare strains", str(data))
        cli("r2", "--instructions", "now strain B", "--follow-up", str(tmp_path / "r1"))
        cli("r3", "--instructions", "now both again", "--follow-up", str(tmp_path / "r2"))
    assert f"note: {provider_notice('openai:test-model')}" in first.stderr   # the user is told
    task = fake.tool_results(4)
    assert "/workspace/previous/" in task and "/workspace/previous-2/" in task
    assert "Second done." in task and "First summary." in task
    assert str(tmp_path) not in task                      # no host path the sandbox cannot open
    assert "# Second\n# First" in fake.tool_results(5)    # both earlier results, where it says
