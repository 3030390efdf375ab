"""Issue 26 F5: an upload named `agent_sandbox/...` replaced the agent: the agent started as
`python -m agent_sandbox...` with /workspace its working folder, first on sys.path, so the
uploaded module ran as the agent on local, Docker and Modal and owned the event stream and the
relay. Now every backend starts the agent the one way (agent_sandbox.backends.contract.
agent_command): `python -I` (no working folder, no PYTHON* variables on its path) with the
package's folder given explicitly, from `/`; and such uploads are refused. Measured on every
backend: whether a package planted in the workspace ran instead of the agent."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from agent_sandbox import events as ev
from agent_sandbox.testing.support import make_spec, shell
from tests.backends import *  # noqa: F403 (`backend`: each backend in turn)
from tests.conftest import REPO

IMPOSTOR = ('import json, sys\n'
            'for kind, data in (("run_started", {"environment": "REPLACED"}), ("message", {"text": "REPLACED"}),\n'
            '                   ("run_finished", {"status": "succeeded", "reason": "REPLACED"})):\n'
            '    print(json.dumps({"v": 1, "seq": 1, "ts": 1, "type": kind, "data": data}), flush=True)\n')
PLANTED = {"agent_sandbox/__init__.py": IMPOSTOR, "agent_sandbox/agent/__init__.py": IMPOSTOR,
           "agent_sandbox/agent/__main__.py": IMPOSTOR, "agent_sandbox.py": IMPOSTOR,
           "sitecustomize.py": IMPOSTOR, "usercustomize.py": IMPOSTOR}


def test_a_package_planted_in_the_workspace_never_runs_as_the_agent(backend, tmp_path, recorder):
    """Planted straight into the workspace (as a library user's workspace or my_files/ could):
    the real agent runs, its commands in /workspace as before."""
    spec = make_spec(tmp_path, [shell("pwd; ls /workspace"), {"kind": "finish", "message": "real agent"}])
    for name, text in PLANTED.items():
        (spec.workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (spec.workspace / name).write_text(text)
    result = backend.run(spec, recorder)
    replaced = "REPLACED" in json.dumps([e for e in recorder.events if e["type"] != ev.OUTPUT
                                         and e["type"] != ev.COMMAND_STARTED])
    print(f"\nF5 {backend.name}: the planted package ran as the agent: {replaced}")
    assert not replaced
    assert result.status == ev.SUCCEEDED and result.summary == "real agent", result.reason
    outputs = "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))
    assert "/workspace\n" in outputs and "sitecustomize.py" in outputs, "commands still run in /workspace"


def test_the_cli_refuses_an_input_under_the_agents_name(tmp_path):
    impostor = tmp_path / "agent_sandbox.py"
    impostor.write_text(IMPOSTOR)
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--output", str(tmp_path / "out"),
                           str(impostor)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "agent_sandbox.py" in proc.stderr and "the agent's own package" in proc.stderr


def test_the_web_app_refuses_an_upload_under_the_agents_name(tmp_path):
    from frontend.app import create_app
    from frontend.settings import Settings
    settings = Settings(data_dir=tmp_path / "data", secret_key="f5", models=["offline"])
    settings.resolve()
    app = create_app(settings, run_jobs=False)
    client = app.test_client()
    csrf = client.get("/api/session").json["csrf_token"]
    # Tables (the web app takes no source code at all), named to land in the agent's package.
    for name in ("agent_sandbox/agent/plates.csv", "agent_sandbox/plates.tsv", "agent_sandbox.csv"):
        resp = client.post("/api/jobs", headers={"X-CSRF-Token": csrf}, content_type="multipart/form-data",
                           data={"files": [(io.BytesIO(b"a,b\n1,2\n"), name), (io.BytesIO(b"a\n1\n"), "d.csv")]})
        assert resp.status_code == 400 and "the agent's own package" in resp.json["error"], (name, resp.json)
    assert not (settings.data_dir / "uploaded_files").exists() or not any((settings.data_dir / "uploaded_files").iterdir())
