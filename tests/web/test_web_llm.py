"""LLM jobs through the web app: a real server process, the real local sandbox,
the real openai SDK in it, and a fake OpenAI server on 127.0.0.1 that only
the server process (the host) can reach."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from web_helpers import only_events  # noqa: E402

from frontend.settings import Settings  # noqa: E402
from tests.fake_llm import FakeLLM, call, finish  # noqa: E402
from tests.llm_support import CSV, new_key  # noqa: E402


def test_llm_job_then_a_follow_up(start_server):
    key = new_key()
    turns = [call("write_file", text="Summarise by strain.", path="report.md", content="# Strains\nB > A\n"),
             finish("Compared the strains: B is higher."),
             call("shell", command="ls /workspace/previous; cat /workspace/previous/report.md"),
             finish("Plotted strain B only.")]
    with FakeLLM("openai", turns, key=key) as fake:
        server = start_server(APP_MODELS="openai:test-model", AGENT_SANDBOX_MY_FILES="", **fake.env())
        c = server.client()
        assert c.get("/api/session").json()["models"] == ["openai:test-model", "offline"]
        resp = c.submit(files={"plate.csv": CSV}, model="openai:test-model", instructions="compare strains")
        assert resp.status_code == 201, resp.text
        first = resp.json()
        frames = c.events(first["id"])
        assert frames[-1]["data"]["status"] == "succeeded", frames[-3:]
        events = only_events(frames)
        types = [e["event"] for e in events]
        assert "usage" in types and "step" in types and "model_request" not in types
        job = c.get(f"/api/jobs/{first['id']}").json()
        assert job["usage"] == {"calls": 2, "total_tokens": 240, "max_tokens": 1_000_000}
        page = c.get(f"/jobs/{first['id']}").text
        assert "Model tokens" in page and "240" in page and 'id="follow-up-form"' in page

        resp = c.post(f"/api/jobs/{first['id']}/follow-up", data={"instructions": "now plot only strain B"})
        assert resp.status_code == 201, resp.text
        second = resp.json()
        assert second["parent"] == first["id"] and second["model"] == "openai:test-model"
        assert c.events(second["id"])[-1]["data"]["status"] == "succeeded"
        history = c.get("/").text
        assert f'href="/jobs/{first["id"]}"' in history and 'class="parent"' in history
        empty = c.post(f"/api/jobs/{first['id']}/follow-up", data={"instructions": " "})
        assert empty.status_code == 400
        all_events = json.dumps(c.events(first["id"]) + c.events(second["id"]))
    task = fake.requests[2]["body"]["messages"][1]["content"]
    assert "now plot only strain B" in task and "Compared the strains: B is higher." in task
    assert "# Strains" in fake.tool_results(3) and "report.md" in fake.tool_results(3)
    assert key not in all_events and key not in server.read_log()
    assert all(r["headers"]["authorization"] == f"Bearer {key}" for r in fake.requests)


def test_offline_is_always_offered(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("APP_OUTPUTS", str(tmp_path / "out"))
    monkeypatch.setenv("APP_MODELS", "anthropic:claude-test")
    monkeypatch.delenv("APP_DEFAULT_MODEL", raising=False)
    s = Settings.from_env()
    assert s.models == ["anthropic:claude-test", "offline"] and s.default_model == "anthropic:claude-test"
