"""The feed hub's two delivery paths: the plain-WSGI generator (one thread per viewer, under
servers other than ours) and the socket hand-over of our server."""

from __future__ import annotations

import http.client
import threading
import time

from cheroot import wsgi

from frontend.app import create_app
from frontend.feed import FeedHub
from frontend.server import make_server, serve
from frontend.settings import Settings
from frontend.store import JobStore


def parse(chunks: list[bytes]) -> list[tuple[str, str]]:
    text = b"".join(chunks).decode()
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            frames.append((fields.get("id", ""), fields["event"]))
    return frames


def test_generator_stream_replays_follows_live_and_ends(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job({"id": "j1", "owner": "o", "backend": "local", "model": "offline", "status": "running"})
    for i in range(3):
        store.append_event("j1", {"type": "raw", "data": {"text": f"old {i}"}})
    hub = FeedHub(store, poll_seconds=0.05, heartbeat=0.2)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(hub.stream("j1", 1, heartbeat=0.2)))
    reader.start()
    deadline = time.monotonic() + 10  # idle: heartbeats flow (wait for one, however slow the start)
    while b": keep-alive" not in b"".join(got) and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(3):
        store.append_event("j1", {"type": "output", "data": {"text": f"new {i}"}})
        hub.notify("j1")
    store.update_job("j1", status="succeeded")
    reader.join(10)
    assert not reader.is_alive()
    assert parse(got) == [("2", "raw"), ("3", "raw"), ("4", "output"), ("5", "output"), ("6", "output"),
                          ("", "end")]
    assert b": keep-alive" in b"".join(got)
    assert hub.feeds == {}, "the feed is dropped with its last viewer"
    hub.stop()


def test_both_delivery_paths_send_the_same_bytes(tmp_path):
    """Our server hands the socket to the hub; any other WSGI server runs the generator.
    A viewer cannot tell them apart: same status, headers (the app's after_request
    included) and body."""
    settings = Settings(data_dir=tmp_path, secret_key="feed-test", trusted_user_header="X-User",
                        trusted_proxies=["127.0.0.1"], poll_seconds=0.05)
    settings.resolve()
    app = create_app(settings, run_jobs=False)
    store = app.extensions["jobs"].store
    store.create_job({"id": "done", "owner": "user:ann", "backend": "local", "model": "offline",
                      "status": "running"})
    for i in range(40):
        store.append_event("done", {"type": "output", "data": {"text": f"line {i} ✓"}})
    store.update_job("done", status="succeeded")
    handoff = make_server(app, "127.0.0.1", 0, threads=4, max_threads=8)
    plain = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
    threads = [threading.Thread(target=serve, args=(handoff,), daemon=True),
               threading.Thread(target=plain.safe_start, daemon=True)]
    for t in threads:
        t.start()
    try:
        answers = [fetch(server, "/api/jobs/done/events?after=5", {"X-User": "ann"}) for server in (handoff, plain)]
    finally:
        handoff.stop()
        plain.stop()
        app.extensions["jobs"].hub.stop()
    (status, headers, body), other = answers
    # The hand-over ends the connection with the stream; the other path may keep it.
    assert headers.pop("Connection") == "close"
    other[1].pop("Connection", None)
    assert other == (status, headers, body)
    assert status == 200 and headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-cache"
    assert headers["Transfer-Encoding"] == "chunked"
    assert parse([body]) == [(str(seq), "output") for seq in range(6, 41)] + [("", "end")]


def fetch(server, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    deadline = time.monotonic() + 10
    while not server.ready:  # started by its thread
        assert time.monotonic() < deadline
        time.sleep(0.01)
    conn = http.client.HTTPConnection(*server.bind_addr, timeout=10)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()  # de-chunked; ends with the stream
    conn.close()
    return resp.status, {k: v for k, v in resp.getheaders() if k not in ("Date", "Server")}, body
