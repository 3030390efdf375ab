"""Upload limits (413/400), job caps (429 with Retry-After) and the queue, on a real server."""

from __future__ import annotations

import threading

import requests
from web_helpers import only_events

SLEEP = [{"kind": "shell", "command": "echo started; sleep 300"}]
MB = 1024 * 1024


def workspaces(server) -> set[str]:
    root = server.root / "outputs" / "uploaded_files"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_upload_limits(start_server):
    server = start_server(APP_MAX_FILE_MB=1, APP_MAX_REQUEST_MB=3, APP_MAX_FILES=2)
    c = server.client()
    r = c.submit([], files={"big.csv": b"x" * (MB + 10)})
    assert r.status_code == 413 and "big.csv" in r.json()["error"] and "per-file limit" in r.json()["error"]
    r = c.submit([], files={"a.csv": b"1", "b.csv": b"2", "c.csv": b"3"})
    assert r.status_code == 400 and "too many files" in r.json()["error"]
    try:
        r = c.submit([], files={f"f{i}.csv": b"y" * (MB - 100) for i in range(2)} | {"g.csv": b"z" * (2 * MB)})
        assert r.status_code == 413
        assert "error" in r.json()
    except requests.ConnectionError:
        pass  # the server may close before the client finished sending; either way nothing is kept
    assert workspaces(server) == set(), "refused uploads leave nothing behind"
    ok = c.submit([], files={"small.csv": b"a,b\n1,2\n"})
    assert ok.status_code == 201, "the server still works after refusals"
    assert workspaces(server) == {ok.json()["id"]}


def test_caps_give_429_and_the_queue_shows_positions(start_server):
    server = start_server(APP_WORKERS=1, APP_MAX_ACTIVE_PER_OWNER=1, APP_MAX_ACTIVE_JOBS=2)
    alice, bob, carol = server.client(), server.client(), server.client()
    a1 = alice.submit(SLEEP)
    assert a1.status_code == 201
    alice.wait_for_event(a1.json()["id"], lambda f: f["event"] == "output")
    a2 = alice.submit(SLEEP)
    assert a2.status_code == 429 and a2.headers["Retry-After"].isdigit()
    assert "you already have 1 job" in a2.json()["error"]
    b1 = bob.submit([{"kind": "shell", "command": "echo bob"}])
    assert b1.status_code == 201
    info = bob.get(f"/api/jobs/{b1.json()['id']}").json()
    assert info["status"] == "queued" and info["queue_position"] == 1
    assert "position 1 in the queue" in bob.get(f"/jobs/{b1.json()['id']}").text
    c1 = carol.submit(SLEEP)
    assert c1.status_code == 429 and "server is at its limit" in c1.json()["error"]
    assert len(workspaces(server)) == 2

    # cancelling the queued job frees a place at once; it never ran; a live viewer sees why
    live: list[dict] = []
    viewer = threading.Thread(target=lambda: live.extend(bob.events(b1.json()["id"])))
    viewer.start()
    bob.wait_for_event(b1.json()["id"], lambda f: True)  # the stream is open and replaying
    assert bob.post(f"/api/jobs/{b1.json()['id']}/cancel").status_code == 202
    viewer.join(30)
    assert live and live[-1]["event"] == "end" and live[-1]["data"]["status"] == "cancelled"
    assert any(f["event"] == "status" and f["data"]["data"]["message"] == "cancelled before it started"
               for f in live), "the live viewer got the reason before `end`"
    frames = bob.events(b1.json()["id"])
    assert frames[-1]["data"]["status"] == "cancelled"
    assert not any(f["event"] == "run_started" for f in only_events(frames))
    c2 = carol.submit([{"kind": "shell", "command": "echo carol"}])
    assert c2.status_code == 201 and c2.json()["queue_position"] == 1

    alice.post(f"/api/jobs/{a1.json()['id']}/cancel")
    assert alice.events(a1.json()["id"])[-1]["data"]["status"] == "cancelled"
    end = carol.events(c2.json()["id"])  # the queued job runs once the slot frees
    assert end[-1]["data"]["status"] == "succeeded"
    assert any("carol" in f["data"]["data"].get("text", "") for f in only_events(end) if f["event"] == "output")
