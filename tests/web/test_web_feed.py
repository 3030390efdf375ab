"""The feed hub's plain-WSGI path (one thread per viewer), used under servers other than ours."""

from __future__ import annotations

import threading
import time

from frontend.feed import FeedHub
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
