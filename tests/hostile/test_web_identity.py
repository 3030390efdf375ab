"""Issue 26, F10 F11: a client cannot name itself another user, and a job cannot outlive the
operator's allow-lists by being run again. Real server processes on one data folder; other
client addresses are other loopback addresses (127.0.0.2 is not the proxy)."""

from __future__ import annotations

from tests.attack import figure
from tests.web.web_helpers import Server, wait_finished

ALICE = {"X-Forwarded-User": "alice"}


def test_f10_the_user_header_counts_only_from_a_trusted_proxy(start_server):
    server = start_server(APP_TRUSTED_USER_HEADER="X-Forwarded-User", APP_TRUSTED_PROXIES="127.0.0.1")
    alice = server.client(**ALICE)   # through the proxy, which names her
    job = alice.submit([{"kind": "shell", "command": "echo alice"}]).json()
    wait_finished(alice, job["id"])
    mallory = server.client(source="127.0.0.2", **ALICE)   # straight to the app, claiming to be her
    read = mallory.get(f"/api/jobs/{job['id']}").status_code
    listed = [j["id"] for j in mallory.get("/api/jobs").json()["jobs"]]
    deleted = mallory.http.delete(f"{server.base}/api/jobs/{job['id']}", headers={"X-CSRF-Token": mallory.csrf},
                                  timeout=30).status_code
    try:   # the header without any proxy to trust: refused at start-up
        start_server(APP_TRUSTED_USER_HEADER="X-Forwarded-User")
        refused = "started"
    except RuntimeError as exc:
        refused = str(exc).strip().splitlines()[-1]
    figure("F10", f"a client at 127.0.0.2 sending X-Forwarded-User: alice: read {read}, "
                  f"listed {len(listed)} of her jobs, delete {deleted}; the header without proxies: {refused[:160]}")
    assert read == 404 and listed == [] and deleted == 404
    assert alice.get(f"/api/jobs/{job['id']}").status_code == 200
    assert "APP_TRUSTED_PROXIES" in refused


def test_f11_rerun_and_follow_up_obey_the_current_allow_lists(tmp_path):
    root = tmp_path / "srv"
    first = Server(root, {"APP_BACKENDS": "local", "APP_MODELS": "scripted,offline"}).start()
    try:
        owner = first.client()
        job = owner.submit([{"kind": "shell", "command": "echo once"}]).json()
        wait_finished(owner, job["id"])
        cookies = owner.http.cookies
    finally:
        first.stop()
    answers, errors, queued = {}, [], []
    for lists in ({"APP_BACKENDS": "local", "APP_MODELS": "offline"},          # the model is no longer allowed
                  {"APP_BACKENDS": "docker", "APP_MODELS": "scripted,offline"}):  # nor the backend
        server = Server(root, lists).start()
        try:
            again = server.client()
            again.http.cookies.update(cookies)
            again.csrf = again.get("/api/session").json()["csrf_token"]
            rerun = again.post(f"/api/jobs/{job['id']}/rerun")
            follow = again.post(f"/api/jobs/{job['id']}/follow-up", data={"instructions": "more"})
            answers[lists["APP_MODELS"] + " + " + lists["APP_BACKENDS"]] = (rerun.status_code, follow.status_code)
            errors.append(rerun.json().get("error", ""))
            queued.append(len(again.get("/api/jobs").json()["jobs"]) - 1)
        finally:
            server.stop()
    figure("F11", f"a scripted+local job rerun / followed up after the allow-lists became (models + backends) "
                  f"{answers}")
    assert all(a == (400, 400) for a in answers.values()), answers
    assert all("not allowed" in e for e in errors), errors
    assert queued == [0, 0], "nothing was queued"
