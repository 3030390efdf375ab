"""Rough edges a new user or a careless client finds, on a real server: what a refused upload
says, hostile upload names, output names no URL can carry, one charset per text file, and a
my_files/ file hidden by an upload of the same name."""

from __future__ import annotations

import http.client
import json

from web_helpers import only_events, wait_finished

MB = 1024 * 1024


def test_a_request_over_the_whole_request_limit_names_that_limit(start_server):
    server = start_server(APP_MAX_FILE_MB=1, APP_MAX_REQUEST_MB=2)
    c = server.client()
    boundary = "b0undary"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/api/jobs")
    for name, value in (("Content-Type", f"multipart/form-data; boundary={boundary}"),
                        ("Content-Length", str(3 * MB)), ("X-CSRF-Token", c.csrf),
                        ("Cookie", "; ".join(f"{k}={v}" for k, v in c.http.cookies.items()))):
        conn.putheader(name, value)
    conn.endheaders()  # the body is never sent: the answer comes from the length alone
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 413
    assert "limit of 2 MB per request" in body["error"] and "1 MB per file" in body["error"], body
    ok = c.submit([], files={"small.csv": b"a\n1\n"})
    assert ok.status_code == 201


def test_hostile_upload_names_are_a_400_not_a_500(start_server):
    server = start_server()
    c = server.client()
    for name in ("/".join(["a"] * 5000) + ".csv",   # thousands of path parts
                 "d/" * 40 + "deep.csv",               # past the folder levels allowed
                 "x" * 2000 + ".csv"):                  # past the characters allowed
        resp = c.submit([], files={name: b"x\n"})
        assert resp.status_code == 400, (name[:20], resp.status_code, resp.text[:300])
        assert "refused file name" in resp.json()["error"] and len(resp.json()["error"]) < 400
    long_bytes = c.submit([], files={"é" * 250 + ".csv": b"x\n"})  # 500 bytes: more than a file system takes
    assert long_bytes.status_code == 201, long_bytes.text
    assert len(long_bytes.json()["files"][0]["name"].encode()) <= 240, "cut to fit"
    assert "Traceback" not in server.read_log()
    assert c.submit([], files={"fine/nested.csv": b"x\n"}).status_code == 201


def test_an_output_named_with_a_line_break_is_skipped_with_a_reason(start_server):
    server = start_server()
    c = server.client()
    code = ("open('/outputs/bad\\nname.txt', 'w').write('x'); open('/outputs/tab\\there.txt', 'w').write('x'); "
            "open('/outputs/good.txt', 'w').write('kept')")
    job = c.submit([{"kind": "python", "code": code}]).json()
    assert wait_finished(c, job["id"])["status"] == "succeeded"
    manifest = c.get(f"/api/jobs/{job['id']}/outputs").json()
    assert [f["path"] for f in manifest["files"]] == ["good.txt"]
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"bad\nname.txt", "tab\there.txt"}
    assert all("control character" in reason for reason in skipped.values())
    for f in manifest["files"]:  # everything listed can be fetched
        assert c.get(f"/api/jobs/{job['id']}/outputs/{f['path']}").status_code == 200
    assert "bad" in c.get(f"/jobs/{job['id']}").text, "the page lists what was not brought back"


def test_served_text_files_carry_one_charset(start_server):
    server = start_server()
    c = server.client()
    files = {"t.csv": "a,b\n1,2\n", "r.md": "# r\n", "d.json": "{}", "p.html": "<p>hi</p>", "n.txt": "é"}
    job = c.submit([{"kind": "write_file", "path": p, "content": t} for p, t in files.items()]).json()
    assert wait_finished(c, job["id"])["status"] == "succeeded"
    for path in files:
        kind = c.get(f"/api/jobs/{job['id']}/outputs/{path}").headers["Content-Type"]
        assert kind.count("charset=") == 1, (path, kind)


def test_the_log_says_which_file_the_job_got_when_an_upload_hides_a_my_files_file(start_server, tmp_path):
    my_files = tmp_path / "my_files"
    my_files.mkdir()
    (my_files / "data.csv").write_text("from my_files\n")
    server = start_server(APP_MY_FILES=my_files)
    c = server.client()
    job = c.submit([{"kind": "shell", "command": "cat /workspace/data.csv"}],
                   files={"data.csv": b"uploaded\n"}).json()
    frames = only_events(c.events(job["id"]))
    warnings = [f["data"]["data"]["message"] for f in frames if f["event"] == "warning"]
    assert warnings == ["data.csv is both an upload and in my_files/: the job got the upload "
                        "(my_files/data.csv was not copied)"]
    assert any("uploaded" in f["data"]["data"].get("text", "") for f in frames if f["event"] == "output")
