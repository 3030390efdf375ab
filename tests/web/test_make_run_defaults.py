"""The app as a new user meets it: started exactly as `make run` starts it (`python -m frontend`
from the repo root, no APP_* settings, so the relative data folder `outputs/` and port 5000),
the sample job run, and every output of the finished job fetched: each file, each download,
the zip, each table preview, and in a real browser every image on the job page.

Port 5000 is the default's own: on a shared machine another session's test may hold it for a
while, so the test waits for it; it skips (saying which process holds it) only when the
holder is not one of ours and has not let go after a few minutes. In CI nothing else runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from web_helpers import REPO, Client, wait_finished

PORT = 5000
BASE = f"http://127.0.0.1:{PORT}"
WAIT_FOR_PORT = 240  # seconds another session's server may keep port 5000 before we skip
pytestmark = pytest.mark.timeout(WAIT_FOR_PORT + 300)  # the wait counts against the first test


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (any address), from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(fields[9])
    return found


def port_holder(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on `port`, (0, "?") if it cannot be seen, or None."""
    inodes = listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    return int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
    return 0, "?"


def descends_from_us(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def start_as_make_run(log_path: Path) -> subprocess.Popen:
    """`make run`'s command, from the repo root, without any APP_* setting; waits for port 5000."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    deadline = time.monotonic() + WAIT_FOR_PORT
    while True:
        holder = port_holder(PORT)
        if holder is not None:
            pid, cmdline = holder
            if pid and descends_from_us(pid):
                pytest.fail(f"port {PORT} is held by a process this test session started: {pid} {cmdline}")
            if time.monotonic() > deadline:
                pytest.skip(f"port {PORT} has been held for {WAIT_FOR_PORT} s by a process that is not ours "
                            f"(pid {pid or 'unknown'}: {cmdline}); this test needs the default port")
            time.sleep(1)
            continue
        log = open(log_path, "wb")
        proc = subprocess.Popen([sys.executable, "-m", "frontend"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            if answers(proc):
                return proc
        except BaseException:
            stop(proc)
            raise
        text = log_path.read_text(errors="replace")
        if proc.poll() is None:
            stop(proc)
            pytest.fail(f"the server did not answer on port {PORT}: {text}")
        if "already in use" not in text:
            pytest.fail(f"the server exited: {text}")
        # Another session took the port between our look and our start: wait again.


def answers(proc: subprocess.Popen) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < 60 and proc.poll() is None:
        try:
            requests.get(BASE + "/api/session", timeout=2)
            return True
        except (requests.ConnectionError, requests.Timeout):  # listening before the app is ready
            time.sleep(0.1)
    return False


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("defaults") / "server.log"
    proc = start_as_make_run(log_path)
    visitor = Client(BASE)
    job = None
    try:
        resp = visitor.post("/api/jobs/sample")
        assert resp.status_code == 201, resp.text
        job = wait_finished(visitor, resp.json()["id"], timeout=300)
        yield visitor, job, log_path
    finally:
        if job is not None:  # leave the developer's outputs/ as it was
            visitor.http.delete(f"{BASE}/api/jobs/{job['id']}", headers={"X-CSRF-Token": visitor.csrf}, timeout=30)
        stop(proc)


def test_every_output_of_the_sample_job_is_served_with_the_defaults(default_server):
    visitor, job, log_path = default_server
    assert job["status"] == "succeeded", job
    data_dir = (REPO / "outputs").resolve()
    assert (data_dir / "results" / job["id"] / "manifest.json").is_file(), "the relative data folder is the repo's"
    manifest = visitor.get(f"/api/jobs/{job['id']}/outputs").json()
    files = manifest["files"]
    assert len(files) >= 5 and any(f["path"].endswith(".png") for f in files), files
    for f in files:
        url = f"/api/jobs/{job['id']}/outputs/{f['path']}"
        resp = visitor.get(url)
        assert resp.status_code == 200, (f["path"], resp.status_code, resp.text[:200])
        assert resp.headers["Content-Type"].count("charset") <= 1, resp.headers["Content-Type"]
        if not f["path"].endswith((".html", ".htm")):  # agent HTML is served with its plots embedded
            assert hashlib.sha256(resp.content).hexdigest() == f["sha256"], f["path"]
        if f["path"].endswith(".png"):
            assert resp.headers["Content-Type"] == "image/png" and resp.content.startswith(b"\x89PNG")
        download = visitor.get(url + "?download=1")
        assert download.status_code == 200 and download.content == resp.content, f["path"]
        assert download.headers["Content-Disposition"].startswith("attachment"), f["path"]
        if f["path"].endswith((".csv", ".parquet")):
            preview = visitor.get(f"/api/jobs/{job['id']}/preview/{f['path']}")
            assert preview.status_code == 200 and preview.json()["columns"], f["path"]
    with zipfile.ZipFile(io.BytesIO(visitor.get(f"/api/jobs/{job['id']}/outputs.zip").content)) as zf:
        zipped = {name.split("/", 1)[1] for name in zf.namelist()}
    assert {f["path"] for f in files} <= zipped
    report = next(f["path"] for f in files if f["path"].endswith("report.md"))
    assert visitor.get(f"/jobs/{job['id']}/view/{report}").status_code == 200
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


def test_every_image_on_the_finished_job_page_loads(default_server, browser):
    visitor, job, _ = default_server
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.add_cookies([{"name": k, "value": v, "url": BASE} for k, v in visitor.http.cookies.items()])
    page = context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(BASE + job["urls"]["page"])
    page.wait_for_selector("body[data-results-loaded='1']", state="attached", timeout=30_000)
    images = page.locator("img")
    assert page.locator(".gallery img").count() >= 1, "the sample's plots are on the page"
    for i in range(images.count()):
        image = images.nth(i)
        image.scroll_into_view_if_needed()  # they load lazily
        expect(image).to_be_visible()
        page.wait_for_function("img => img.complete", arg=image.element_handle(), timeout=15_000)
        assert image.evaluate("img => img.naturalWidth") > 0, image.get_attribute("src")
    assert failed == [], failed
    context.close()
