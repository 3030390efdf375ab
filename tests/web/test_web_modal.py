"""End to end on the Modal backend: the web app runs a job in a Modal Sandbox
through the real `modal` client against our local Modal API emulator."""

from __future__ import annotations

import hashlib

from web_helpers import only_events

from tests.modal_support import shared_emulator

SCRIPT = [
    {"kind": "shell", "thought": "where am I", "command": "echo task=$MODAL_TASK_ID; cat /workspace/data.csv"},
    {"kind": "python", "code": "open('/outputs/summary.csv', 'w').write('rows,2\\n')"},
    {"kind": "finish", "message": "done on modal"},
]


def test_web_job_runs_on_the_modal_backend(start_server):
    emulator = shared_emulator()
    server = start_server(APP_BACKENDS="local,modal", **emulator.env())
    client = server.client()
    resp = client.submit(SCRIPT, backend="modal")
    assert resp.status_code == 201, resp.text
    job = resp.json()
    frames = client.events(job["id"])
    events = only_events(frames)
    assert frames[-1]["event"] == "end" and frames[-1]["data"]["status"] == "succeeded", frames[-3:]
    started = [e for e in events if e["event"] == "run_started"]
    assert started and started[0]["data"]["data"]["environment"] == "modal"
    text = "".join(e["data"]["data"].get("text", "") for e in events if e["event"] == "output")
    assert "task=" in text and "task=\n" not in text and "1,2" in text

    info = client.get(f"/api/jobs/{job['id']}").json()
    assert info["status"] == "succeeded" and info["backend"] == "modal"
    manifest = client.get(f"/api/jobs/{job['id']}/outputs").json()
    files = {f["path"]: f for f in manifest["files"]}
    body = client.get(f"/api/jobs/{job['id']}/outputs/summary.csv").content
    assert body == b"rows,2\n" and files["summary.csv"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert not emulator.running_sandboxes()
    # The image was built (or found built) once at start-up, said in the server's log.
    assert "Modal image: building or looking up" in server.read_log() and "ready in" in server.read_log()
