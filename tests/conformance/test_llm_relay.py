"""The LLM agent on every backend: the real openai / anthropic SDKs inside the
sandbox, a fake API server on the host's 127.0.0.1, and the relay between them.

The sandbox has no network and never sees the key: a command cannot reach the
server itself, a probe finds the key nowhere in the sandbox, and the key is in
no event, output, manifest or log.
"""

from __future__ import annotations

import json

from agent_sandbox import events as ev
from tests.fake_llm import FakeLLM, call, calls, error, finish
from tests.llm_support import all_text_under, key_hash, llm_spec, new_key, probe_commands, probe_hits, reach_command

FIT = """import csv, statistics
rows = list(csv.DictReader(open('/workspace/plate.csv')))
by = {}
for r in rows:
    by.setdefault(r['strain'], []).append(float(r['od']))
with open('/outputs/means.csv', 'w') as f:
    f.write('strain,mean_od\\n')
    for s, v in sorted(by.items()):
        f.write(f'{s},{statistics.mean(v):.3f}\\n')
        print('mean', s, round(statistics.mean(v), 3))
"""


def test_multi_step_run_through_the_relay_keeps_key_and_network_out(backend, tmp_path, recorder):
    key, decoy = new_key(), new_key()
    with FakeLLM("openai", [], key=key) as fake:
        fake.turns = [
            call("shell", text="First the data.", command="head -3 /workspace/plate.csv"),
            call("shell", command=reach_command(fake.base_url + "/chat/completions")),
            calls(*probe_commands(decoy)),
            call("write_file", path="scripts/fit.py", content=FIT),
            call("shell", command="python /outputs/scripts/fit.py"),
            call("write_file", path="report.md", content="# OD by strain\nB grows more than A.\n"),
            finish("Means per strain are in means.csv; B is higher."),
        ]
        spec = llm_spec(tmp_path, fake)
        result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert result.summary == "Means per strain are in means.csv; B is higher."
    assert (spec.results / "means.csv").read_text() == "strain,mean_od\nA,0.110\nB,0.320\n"
    assert (spec.results / "report.md").exists() and (spec.results / "scripts/fit.py").exists()
    assert (spec.results / "scripts/analyze_table.py").exists()   # the playbook's scripts, for the model
    # Each observation went back to the model: the fit's output is in the request after it.
    assert "mean B 0.32" in fake.tool_results(5)
    assert "First the data." in [e["data"]["text"] for e in recorder.of_type(ev.STEP)]
    # Token usage per call, and in the result.
    usage = recorder.of_type(ev.USAGE)
    assert len(usage) == 7 and usage[-1]["data"]["job_tokens"] == 7 * 120
    assert result.usage == {"calls": 7, "input_tokens": 700, "output_tokens": 140, "total_tokens": 840}
    assert recorder.of_type(ev.RESULT)[-1]["data"]["usage"]["total_tokens"] == 840
    # The boundary: no way out to the server, no key anywhere inside.
    outputs = "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))
    assert "BLOCKED" in outputs and "REACHED" not in outputs
    scanned, hits = probe_hits(recorder.events)
    assert scanned > 50 and key_hash(decoy) in hits, "the probe must find its decoy"
    assert key_hash(key) not in hits
    # ...and the key is in no event, output or manifest; the server did get it.
    assert key not in recorder.text()
    assert key.encode() not in all_text_under(spec.results)
    assert all(r["headers"].get("authorization") == f"Bearer {key}" for r in fake.requests)
    assert all(r["body"]["model"] == "test-model" for r in fake.requests)
    if backend.name == "modal":   # nor in the (emulated) Modal's log of every RPC
        from tests.modal_support import shared_emulator
        assert key not in shared_emulator().log_text()


def test_anthropic_with_a_429_then_success(backend, tmp_path, recorder):
    key = new_key()
    turns = [error(429, "slow down", {"retry-after-ms": "50"}),
             call("shell", text="Looking.", command="wc -l /workspace/plate.csv"),
             finish("5 lines.")]
    with FakeLLM("anthropic", turns, key=key) as fake:
        result = backend.run(llm_spec(tmp_path, fake), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert len(fake.requests) == 3 and all(r["headers"]["x-api-key"] == key for r in fake.requests)
    assert "5 /workspace/plate.csv" in fake.tool_results(2)
    assert any("429" in e["data"]["message"] for e in recorder.of_type(ev.WARNING))
    assert result.usage["calls"] == 2
    assert key not in json.dumps(recorder.events)
