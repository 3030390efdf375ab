"""One real LLM job against whichever of OPENAI_API_KEY / ANTHROPIC_API_KEY is set
(`make test-live`; not part of `make test`). The key stays in this process: the
agent in the local sandbox reaches the model through the relay.

Models: AGENT_SANDBOX_LIVE_OPENAI_MODEL (default gpt-4o-mini),
AGENT_SANDBOX_LIVE_ANTHROPIC_MODEL (default claude-3-5-haiku-latest); OPENAI_BASE_URL
and ANTHROPIC_BASE_URL are honoured as everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.relay.host import ModelAccess
from agent_sandbox.spec import Limits, RunSpec

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "plate_reader.csv"
MODELS = {"OPENAI_API_KEY": ("openai", os.environ.get("AGENT_SANDBOX_LIVE_OPENAI_MODEL", "gpt-4o-mini")),
          "ANTHROPIC_API_KEY": ("anthropic", os.environ.get("AGENT_SANDBOX_LIVE_ANTHROPIC_MODEL",
                                                            "claude-3-5-haiku-latest"))}
LIVE = [(name, *model) for name, model in MODELS.items() if os.environ.get(name)]


@pytest.mark.skipif(not LIVE, reason="set OPENAI_API_KEY or ANTHROPIC_API_KEY for the live test")
@pytest.mark.parametrize("key_name,provider,model", LIVE)
def test_one_real_job(key_name, provider, model, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(SAMPLE, workspace / SAMPLE.name)
    events: list[dict] = []
    spec = RunSpec(job_id="live", workspace=workspace, results=tmp_path / "results",
                   instructions="Compute the mean of every numeric column and save it as means.csv "
                                "(columns: column, mean); then write a short report.md.",
                   model=f"{provider}:{model}", limits=Limits(max_steps=25, max_tokens=300_000),
                   model_access=ModelAccess.from_env(f"{provider}:{model}", dict(os.environ)))
    result = get_backend("local").run(spec, lambda e: (events.append(e), print(ev.render(e), flush=True)))
    key = os.environ[key_name]
    assert result.status == ev.SUCCEEDED, result.reason
    assert (spec.results / "means.csv").exists() and (spec.results / "report.md").exists()
    assert result.usage["total_tokens"] > 0
    assert key not in json.dumps(events)
    assert all(key.encode() not in p.read_bytes() for p in spec.results.rglob("*") if p.is_file())
