"""Routes in process: the real app (create_app) through Flask's test client, jobs run by a
stand-in backend (web_helpers.StandInBackend). No server process, no sandbox: the common
case of a route test. What needs a real server (event stream hand-over, signals,
restarts) or a real sandbox is tested in the other files of this folder."""

from __future__ import annotations

import html
import io
import json
import re
import time

import pytest
from web_helpers import StandInBackend

from agent_sandbox.events import FINAL, Status
from frontend.app import create_app
from frontend.settings import Settings
from frontend.statuses import statuses_for_pages

SCRIPT = [{"kind": "shell", "command": "ls /workspace"},
          {"kind": "write_file", "path": "clean.csv", "content": "sample,value\nA,1.5\n"},
          {"kind": "write_file", "path": "report.md", "content": "# Findings\n"},
          {"kind": "finish", "message": "all done"}]


class Visitor:
    """One browser: its own cookies (so its own identity) and CSRF token."""

    def __init__(self, app, **headers):
        self.http = app.test_client()
        self.headers = headers
        self.csrf = self.get("/api/session").json["csrf_token"]

    def get(self, path: str, **kw):
        return self.http.get(path, headers=self.headers, **kw)

    def post(self, path: str, csrf: str | None = None, **kw):
        headers = {**self.headers, "X-CSRF-Token": self.csrf if csrf is None else csrf}
        return self.http.post(path, headers=headers, **kw)

    def submit(self, actions=None, files: dict[str, bytes] | None = None, **form):
        files = files if files is not None else {"data.csv": b"a,b\n1,2\n"}
        data = {"model": "scripted", "script": json.dumps(actions or []), **form,
                "files": [(io.BytesIO(body), name) for name, body in files.items()]}
        return self.post("/api/jobs", data=data, content_type="multipart/form-data")

    def run(self, actions=SCRIPT) -> dict:
        resp = self.submit(actions)
        assert resp.status_code == 201, resp.json
        return self.ended(resp.json["id"])

    def ended(self, job_id: str) -> dict:
        """The job once it has ended."""
        deadline = time.monotonic() + 30
        while (job := self.get(f"/api/jobs/{job_id}").json)["status"] not in FINAL:
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        return job


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(**overrides):
        settings = Settings(data_dir=tmp_path / f"app{len(apps)}", models=["scripted", "offline"],
                            secret_key="route-tests", poll_seconds=0.05, max_active_per_owner=20,
                            **overrides)
        settings.resolve()
        app = create_app(settings, backend_factory=lambda name: StandInBackend(tmp_path / "scratch"))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["jobs"].executor.stop()
        app.extensions["jobs"].hub.stop()


@pytest.fixture
def app(make_app):
    return make_app()


def test_a_job_runs_and_its_results_are_served(app):
    alice = Visitor(app)
    job = alice.run()
    assert job["status"] == "succeeded", job
    manifest = alice.get(f"/api/jobs/{job['id']}/outputs").json
    assert {f["path"] for f in manifest["files"]} == {"clean.csv", "report.md"}
    csv = alice.get(f"/api/jobs/{job['id']}/outputs/clean.csv")
    assert csv.status_code == 200 and csv.data == b"sample,value\nA,1.5\n"
    assert alice.get(f"/api/jobs/{job['id']}/preview/clean.csv").json["rows"] == [["A", 1.5]]  # typed, as the table views


def test_two_owners_cannot_see_each_others_jobs(app):
    alice, bob = Visitor(app), Visitor(app)
    jid = alice.run()["id"]
    assert alice.get(f"/api/jobs/{jid}").status_code == 200
    for path in (f"/api/jobs/{jid}", f"/api/jobs/{jid}/events", f"/api/jobs/{jid}/outputs",
                 f"/api/jobs/{jid}/outputs/clean.csv", f"/api/jobs/{jid}/outputs.zip",
                 f"/api/jobs/{jid}/preview/clean.csv", f"/jobs/{jid}", f"/jobs/{jid}/results"):
        resp = bob.get(path)
        assert resp.status_code == 404, path
        assert jid[:8] not in resp.text or "no job" in resp.text
    assert bob.post(f"/api/jobs/{jid}/cancel").status_code == 404
    assert jid not in json.dumps(bob.get("/api/jobs").json)
    assert jid[:8] not in bob.get("/").text
    assert jid in json.dumps(alice.get("/api/jobs").json)
    err = bob.get(f"/api/jobs/{jid}").json
    assert err["status"] == 404 and "no job" in err["error"]


def test_paths_never_escape_the_results(app):
    alice = Visitor(app)
    jid = alice.run()["id"]
    for path in ("../../secret_key", "..%2F..%2Fsecret_key", "%2e%2e/%2e%2e/jobs.sqlite3",
                 "/etc/passwd", "plots/../../manifest.json", "manifest.json", "missing.txt"):
        resp = alice.get(f"/api/jobs/{jid}/outputs/{path}", follow_redirects=True)  # "//" is merged first
        assert resp.status_code == 404, path
        assert b"sqlite" not in resp.data.lower() or b"no output" in resp.data


def test_csrf_is_required_for_posts(app):
    alice = Visitor(app)
    files = {"files": [(io.BytesIO(b"x"), "a.csv")]}
    resp = alice.http.post("/api/jobs", data=files, content_type="multipart/form-data")
    assert resp.status_code == 403 and "CSRF" in resp.json["error"]
    files = {"files": [(io.BytesIO(b"x"), "a.csv")]}
    assert alice.post("/api/jobs", csrf="forged", data=files).status_code == 403
    other = Visitor(app)  # a token from another session is no good either
    files = {"files": [(io.BytesIO(b"x"), "a.csv")]}
    assert alice.post("/api/jobs", csrf=other.csrf, data=files).status_code == 403
    assert alice.get("/api/jobs").json["jobs"] == []


def test_bad_uploads_are_refused_clearly(app):
    alice = Visitor(app)
    resp = alice.post("/api/jobs", data={"model": "scripted"}, content_type="multipart/form-data")
    assert resp.status_code == 400 and "no files" in resp.json["error"]
    resp = alice.submit([], files={"../escape.csv": b"a"})
    assert resp.status_code == 400 and "refused" in resp.json["error"]
    resp = alice.submit([], backend="docker-on-the-moon")
    assert resp.status_code == 400 and "not allowed" in resp.json["error"]
    resp = alice.submit([], model="openai:gpt-x")
    assert resp.status_code == 400 and "not allowed" in resp.json["error"]
    # (The test client does not escape quotes in file names; test_web_api.py sends one.)
    resp = alice.submit([], files={"weird <b>name</b>*?|.csv": b"a,b\n"})
    assert resp.status_code == 201
    name = resp.json["files"][0]["name"]
    assert not set("<>*?|") & set(name) and name.endswith(".csv")
    settings = app.config["SETTINGS"]
    assert (settings.data_dir / "uploaded_files" / resp.json["id"] / name).read_bytes() == b"a,b\n"
    assert alice.get("/api/jobs/not-a-job").status_code == 404


def test_trusted_user_header_names_the_owner(make_app):
    app = make_app(trusted_user_header="X-Forwarded-User", trusted_proxies=["127.0.0.1"])  # the test client's
    laptop, phone = Visitor(app, **{"X-Forwarded-User": "alice"}), Visitor(app, **{"X-Forwarded-User": "alice"})
    bob, anonymous = Visitor(app, **{"X-Forwarded-User": "bob"}), Visitor(app)
    job = laptop.run()
    assert phone.get(f"/api/jobs/{job['id']}").status_code == 200, "same user, other browser"
    assert bob.get(f"/api/jobs/{job['id']}").status_code == 404
    assert anonymous.get(f"/api/jobs/{job['id']}").status_code == 404


def test_the_event_stream_goes_through_after_request(app):
    alice = Visitor(app)
    job = alice.run()
    resp = alice.get(f"/api/jobs/{job['id']}/events")
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache" and resp.headers["X-Accel-Buffering"] == "no"
    assert resp.headers["X-Content-Type-Options"] == "nosniff", "the app's security headers apply"
    body = resp.get_data(as_text=True)
    assert body.startswith("retry: 2000\n\n") and body.endswith('event: end\ndata: {"status": "succeeded"}\n\n')


def test_pages_get_the_statuses_as_data(app):
    alice = Visitor(app)
    job = alice.run()
    page = alice.get(f"/jobs/{job['id']}").text
    data = json.loads(html.unescape(re.search(r'data-statuses="([^"]*)"', page).group(1)))
    assert data == statuses_for_pages() and "interrupted" in data["final"]
    assert set(data["tones"]) == set(Status), "every status has a tone for the page"
    assert '<span id="status" class="badge tone-ok">succeeded</span>' in page
    assert 'class="badge tone-ok">succeeded<' in alice.get("/").text


def test_live_log_places_are_capped_and_given_back_on_the_plain_wsgi_path(make_app):
    app = make_app(max_streams_per_owner=1)
    alice = Visitor(app)
    job = alice.run()
    first = alice.http.get(f"/api/jobs/{job['id']}/events", headers=alice.headers, buffered=False)
    assert first.status_code == 200
    refused = alice.get(f"/api/jobs/{job['id']}/events")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "10"
    assert "live logs open" in refused.json["error"]
    first.close()  # never read: the place comes back when the server closes the body
    again = alice.get(f"/api/jobs/{job['id']}/events")
    assert again.status_code == 200 and again.get_data(as_text=True).endswith('"succeeded"}\n\n')
    again.close()  # as every WSGI server does
    assert app.extensions["jobs"].streams.total == 0


def test_a_job_stored_by_an_older_version_still_serves_its_outputs(app, monkeypatch):
    """Stored limits are rebuilt with Limits.restore: a field renamed since, or one that is gone,
    does not break the job's output routes (Limits(**stored) raised TypeError: a 500)."""
    from agent_sandbox.spec import Limits
    alice = Visitor(app)
    job = alice.run()
    store = app.extensions["jobs"].store
    stored = store.get_job(job["id"])["limits"]
    monkeypatch.setattr(Limits, "RENAMED", {"preview_size": "preview_bytes"})
    old = {**{k: v for k, v in stored.items() if k != "preview_bytes"}, "preview_size": 10, "gone_setting": 1}
    store.update_job(job["id"], limits=old)
    assert alice.get(f"/api/jobs/{job['id']}/outputs/clean.csv").status_code == 200
    page = alice.get(f"/jobs/{job['id']}/view/report.md")
    assert page.status_code == 200 and "Findings" not in page.text, "over the old 10-byte preview limit: not rendered"


def test_a_web_jobs_workspace_goes_with_the_job_and_a_refused_one_leaves_nothing(make_app):
    """Issue 19.4 on the web side: every way to make a job (upload, rerun, follow-up) prepares its
    workspace in one place; a refused request leaves no folder, a deleted job takes its own."""
    app = make_app()
    app.config["SETTINGS"].models.append("openai:gpt-test")   # a follow-up needs a model that reads instructions
    workspaces = app.config["SETTINGS"].data_dir / "uploaded_files"
    alice = Visitor(app)
    job = alice.run()
    assert sorted(p.name for p in workspaces.iterdir()) == [job["id"]]
    assert alice.submit([], files={"../../escape": b"x"}).status_code == 400
    assert alice.post(f"/api/jobs/{job['id']}/follow-up", data={"instructions": ""}).status_code == 400
    assert sorted(p.name for p in workspaces.iterdir()) == [job["id"]], "refused: nothing left"
    rerun = alice.post(f"/api/jobs/{job['id']}/rerun")
    follow = alice.post(f"/api/jobs/{job['id']}/follow-up", data={"instructions": "more", "model": "openai:gpt-test"})
    assert rerun.status_code == 201 and follow.status_code == 201
    assert (workspaces / follow.json["id"] / "previous" / "clean.csv").is_file(), "the follow-up got the results"
    for new in (rerun.json, follow.json):
        deadline = time.monotonic() + 30
        while alice.get(f"/api/jobs/{new['id']}").json["status"] not in FINAL:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    for made in (job, rerun.json, follow.json):
        assert alice.http.delete(f"/api/jobs/{made['id']}", headers={"X-CSRF-Token": alice.csrf}).status_code == 204
    assert list(workspaces.iterdir()) == [], "each deleted job took its workspace"
