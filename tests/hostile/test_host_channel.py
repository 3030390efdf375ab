"""Issue 26 F3: the agent's stdout is the host channel (its events, its model requests); no
command may write to it. Before: on Docker, PID 1 (docker-init) ran as the sandbox's uid and
held the container's stdout, so a plain command wrote forged events and model requests to
/proc/1/fd/1 (the relay made 8 calls, 32,080 tokens against a 5,000 budget). Measured on every
backend: the channels a command could open, the forged events the host received, the model
calls the relay made beyond the agent's own."""

from __future__ import annotations

from agent_sandbox import events as ev
from agent_sandbox.spec import Limits
from agent_sandbox.testing.containment import CHANNEL_PROBE, forged_events, probe_result
from tests.backends import *  # noqa: F403 (`backend`: each backend in turn)
from tests.fake_llm import FakeLLM, call, finish
from tests.llm_support import llm_spec, new_key


def test_a_command_cannot_forge_events_or_model_calls(backend, tmp_path, recorder):
    turns = [call("write_file", path="probe.py", content=CHANNEL_PROBE),
             call("shell", command="python /outputs/probe.py"),
             finish("probed")]
    with FakeLLM("openai", [], key=new_key()) as fake:
        fake.turns = list(turns)
        spec = llm_spec(tmp_path, fake, limits=Limits(run_timeout=120, command_timeout=60, idle_timeout=60,
                                                      max_tokens=5000))
        result = backend.run(spec, recorder)
    opened = probe_result(recorder, "CHANNELS")
    forged = forged_events(recorder)
    extra_calls = len(fake.requests) - len(turns)
    print(f"\nF3 {backend.name}: channels a command opened {opened}; forged events received {len(forged)}; "
          f"model calls beyond the agent's {extra_calls}; tokens {result.usage.get('total_tokens')}")
    assert result.status == ev.SUCCEEDED and result.summary == "probed", result.reason
    assert forged == [] and extra_calls == 0
    assert result.usage["calls"] == len(turns)
