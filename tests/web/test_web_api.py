"""The JSON API and SSE through a real server process and the real local backend."""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile

import requests
from web_helpers import only_events, sandbox_processes

PLOT_CODE = """
import os, matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
os.makedirs('/outputs/plots', exist_ok=True)
plt.plot([1, 2, 3], [2, 4, 3]); plt.savefig('/outputs/plots/trend.png')
open('/outputs/clean.csv', 'w').write('sample,value\\nA,1.5\\nB,2.5\\n')
import pandas as pd
pd.DataFrame({'sample': ['A', 'B', 'C'], 'value': [1.5, 2.5, 3.5]}).to_parquet('/outputs/clean.parquet')
os.symlink('/etc/passwd', '/outputs/passwd-link')
"""
FULL_SCRIPT = [
    {"kind": "shell", "thought": "look at the data", "command": "ls /workspace; cat /workspace/data.csv"},
    {"kind": "python", "thought": "plot it", "code": PLOT_CODE},
    {"kind": "write_file", "path": "report.md",
     "content": "# Findings\n\nValues **rise**.\n\n![trend](plots/trend.png)\n\n<script>alert(1)</script>\n"},
    {"kind": "write_file", "path": "page.html", "content": "<html><script>alert(1)</script></html>"},
    {"kind": "finish", "message": "all done"},
]
SLOW_SCRIPT = [{"kind": "shell", "command": "for i in $(seq 1 12); do echo tick $i; sleep 0.15; done"}]
SLEEP_SCRIPT = [{"kind": "shell", "command": "echo started; sleep 300"}]


def run_to_end(client, actions, **kw) -> tuple[dict, list[dict]]:
    resp = client.submit(actions, **kw)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    frames = client.events(job["id"])
    return job, frames


def test_upload_stream_results(server):
    c = server.client()
    cookie = c.http.get(server.base + "/api/session").headers.get("Set-Cookie", "") or \
        requests.get(server.base + "/api/session").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie, "the identity cookie is HttpOnly"
    job, frames = run_to_end(c, FULL_SCRIPT, instructions="plot the values")
    assert job["status"] == "queued" and len(job["id"]) >= 20
    events = only_events(frames)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1)), "ids are contiguous from 1"
    assert frames[-1]["event"] == "end" and frames[-1]["data"]["status"] == "succeeded"
    types = [e["event"] for e in events]
    for t in ("status", "run_started", "step", "command_started", "output", "command_finished",
              "file_written", "run_finished", "result"):
        assert t in types, f"no {t} event"
    assert any("1,2" in e["data"]["data"].get("text", "") for e in events if e["event"] == "output")
    assert all(e["data"]["seq"] == e["id"] for e in events)

    info = c.get(f"/api/jobs/{job['id']}").json()
    assert info["status"] == "succeeded" and info["finished"] >= info["started"] >= info["created"]
    assert info["files"] == [{"name": "data.csv", "size": 12}] and info["instructions"] == "plot the values"
    assert info["limits"]["max_steps"] > 0 and info["queue_position"] is None

    manifest = c.get(f"/api/jobs/{job['id']}/outputs").json()
    paths = {f["path"]: f for f in manifest["files"]}
    assert {"report.md", "plots/trend.png", "clean.csv", "page.html"} <= set(paths)

    csv = c.get(f"/api/jobs/{job['id']}/outputs/clean.csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert csv.content == b"sample,value\nA,1.5\nB,2.5\n"
    png = c.get(f"/api/jobs/{job['id']}/outputs/plots/trend.png")
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert hashlib.sha256(png.content).hexdigest() == paths["plots/trend.png"]["sha256"]
    # Agent-written HTML cannot run scripts on our origin.
    html = c.get(f"/api/jobs/{job['id']}/outputs/page.html")
    assert html.headers["Content-Security-Policy"] == "sandbox"
    assert c.get(f"/api/jobs/{job['id']}/outputs/page.html?download=1").headers[
        "Content-Disposition"].startswith("attachment")

    preview = c.get(f"/api/jobs/{job['id']}/preview/clean.csv").json()
    assert preview["columns"] == ["sample", "value"] and preview["rows"] == [["A", 1.5], ["B", 2.5]]  # typed
    preview = c.get(f"/api/jobs/{job['id']}/preview/clean.parquet").json()
    assert preview["columns"] == ["sample", "value"] and preview["total_rows"] == 3
    assert preview["rows"][2] == ["C", 3.5]
    assert manifest["skipped"][0]["path"] == "passwd-link" and "symlink" in manifest["skipped"][0]["reason"]
    assert c.get(f"/api/jobs/{job['id']}/outputs/passwd-link").status_code == 404

    z = c.get(f"/api/jobs/{job['id']}/outputs.zip")
    assert z.status_code == 200 and z.headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in z.headers, "the zip is streamed"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = zf.namelist()
        prefix = re.search(r'filename="(.+)\.zip"', z.headers["Content-Disposition"]).group(1) + "/"  # the job's name
        assert prefix + "manifest.json" in names
        for path, entry in paths.items():
            assert hashlib.sha256(zf.read(prefix + path)).hexdigest() == entry["sha256"]

    page = c.get(f"/jobs/{job['id']}")
    assert page.status_code == 200 and ">Findings</h1>" in page.text
    assert f'src="/api/jobs/{job["id"]}/outputs/plots/trend.png"' in page.text
    assert "<script>alert(1)</script>" not in page.text, "raw HTML in the report is escaped"
    assert "<td>A</td>" in page.text and "<td>C</td>" in page.text, "CSV and Parquet previews are on the page"
    assert "passwd-link" in page.text and "symlink (never followed)" in page.text, "skipped files, with why"
    assert job["id"][:8] in c.get("/").text, "the job is in the history"

    replay = c.events(job["id"])
    assert only_events(replay) == events, "a finished job replays in full"


def test_resume_with_last_event_id_loses_and_repeats_nothing(server):
    c = server.client()
    job = c.submit(SLOW_SCRIPT).json()
    first = only_events(c.events(job["id"], stop_after=6))
    assert len(first) == 6
    last = first[-1]["id"]
    rest = c.events(job["id"], last_event_id=last)
    assert rest[-1]["event"] == "end"
    resumed = first + only_events(rest)
    full = only_events(c.events(job["id"]))
    assert [e["id"] for e in resumed] == [e["id"] for e in full] == list(range(1, len(full) + 1))
    assert resumed == full
    ticks = [e["data"]["data"]["text"] for e in full if e["event"] == "output"]
    assert "".join(ticks).count("tick") == 12
    after = only_events(c.events(job["id"], after=len(full) - 2))
    assert [e["id"] for e in after] == [len(full) - 1, len(full)]
    # an idle live stream carries heartbeat comments (APP_HEARTBEAT_SECONDS=1 in the tests)
    job2 = c.submit([{"kind": "shell", "command": "sleep 2.5; echo late"}]).json()
    frames = c.events(job2["id"])
    assert any("comment" in f for f in frames) and frames[-1]["event"] == "end"


def test_a_file_name_with_markup_reaches_the_sandbox_sanitized(server):
    # Route checks (owners, paths, CSRF, refusals) run in process: test_routes.py.
    c = server.client()
    r = c.submit([{"kind": "shell", "command": "cd /workspace && find . -type f"}],
                 files={'weird <b>"name"</b>.csv': b"a,b\n"})
    assert r.status_code == 201
    name = r.json()["files"][0]["name"]
    assert "<" not in name and '"' not in name and name.endswith(".csv")
    frames = c.events(r.json()["id"])
    assert any(name in e["data"]["data"].get("text", "") for e in only_events(frames)
               if e["event"] == "output")


def test_cancel_stops_the_sandbox(server):
    c = server.client()
    job = c.submit(SLEEP_SCRIPT).json()
    c.wait_for_event(job["id"], lambda f: f["event"] == "output" and "started" in f["data"]["data"]["text"])
    assert sandbox_processes(job["id"]), "the sandbox is running"
    t0 = time.time()
    r = c.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    frames = c.events(job["id"])
    assert frames[-1]["data"]["status"] == "cancelled"
    assert time.time() - t0 < 20
    assert c.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
    deadline = time.time() + 10
    while sandbox_processes(job["id"]) and time.time() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(job["id"]) == [], "no process of the job is left"


def test_job_management_api_owner_only(server):
    owner, stranger = server.client(), server.client()
    job = owner.submit([{"kind": "shell", "command": "echo hi > /outputs/a.txt"}]).json()
    running = owner.submit([{"kind": "shell", "command": "sleep 30"}]).json()
    assert owner.get(f"/api/jobs/{job['id']}").json()["name"] == "data.csv"
    for method, path in [("PATCH", ""), ("DELETE", ""), ("POST", "/rerun"), ("POST", "/share"), ("DELETE", "/share")]:
        resp = stranger.http.request(method, f"{server.base}/api/jobs/{job['id']}{path}", json={"name": "x"},
                                     headers={"X-CSRF-Token": stranger.csrf}, timeout=30)
        assert resp.status_code == 404, (method, path, resp.text)
    url = f"{server.base}/api/jobs/{job['id']}"
    hdr = {"X-CSRF-Token": owner.csrf}
    assert owner.http.patch(url, json={"name": 3}, headers=hdr).status_code == 400
    assert owner.http.patch(url, json={"name": "  Run   one "}, headers=hdr).json()["name"] == "Run one"
    assert owner.http.patch(url, json={"name": ""}, headers=hdr).json()["name"] == "data.csv"
    assert owner.http.patch(url, json={"name": "x"}).status_code == 403, "CSRF token required"
    resp = owner.http.delete(f"{server.base}/api/jobs/{running['id']}", headers=hdr)
    assert resp.status_code == 409 and "cancel it" in resp.json()["error"]
    owner.post(f"/api/jobs/{running['id']}/cancel")
    share = owner.post(f"/api/jobs/{job['id']}/share").json()
    assert stranger.get(share["url"].replace(server.base, "")).status_code == 200, "the link opens the job"
    assert stranger.get(f"/api/jobs/{job['id']}").status_code == 200, "reads work for the link's holder"
    owner.post(f"/api/jobs/{job['id']}/share")  # a new link revokes the old one
    assert stranger.get(f"/api/jobs/{job['id']}").status_code == 404
    assert stranger.get(share["url"].replace(server.base, "")).status_code == 404
    rerun = owner.post(f"/api/jobs/{job['id']}/rerun")
    assert rerun.status_code == 201 and rerun.json()["files"] == job["files"]
    wait = owner.events(rerun.json()["id"])
    assert wait[-1]["data"]["status"] == "succeeded"
    assert owner.http.delete(url, headers=hdr).status_code == 204
    assert owner.get(f"/api/jobs/{job['id']}").status_code == 404
    assert job["id"] not in owner.get("/api/jobs").text
    assert owner.post(f"/api/jobs/{job['id']}/rerun").status_code == 404


def test_requests_that_change_no_session_send_no_cookie(server):
    """A page's parallel requests must not send back the cookie they started with: one arriving
    after a request that changed the session (a share link opened) would undo that change."""
    c = server.client()
    c.http.get(server.base + "/api/session")          # the visitor's identity and CSRF token
    for path in ("/static/app.css", "/api/session", "/", "/api/jobs"):
        resp = c.http.get(server.base + path)
        assert resp.status_code == 200
        assert "Set-Cookie" not in resp.headers, f"{path} re-sent an unchanged session cookie"
