"""Live event streams: one reader per job, fanned out to every viewer.

`FeedHub` runs one thread. It is woken when this process stores an event (and
otherwise polls every `poll_seconds`, to see events other processes store),
reads the new events of every job someone is watching, encodes each event
ONCE as an SSE frame and wakes that job's viewers. A viewer therefore never
queries the database while it follows a job live; it reads the database only
to catch up on history older than the feed's in-memory tail.
"""

from __future__ import annotations

import json
import threading
from typing import Iterator

from frontend.store import ACTIVE, JobStore

TAIL = 2000  # frames kept in memory per watched job


def sse_frame(seq: int, type: str, event_json: str) -> bytes:
    # json.dumps never emits a raw newline, so one data: line is enough.
    return f"id: {seq}\nevent: {type}\ndata: {event_json}\n\n".encode()


class JobFeed:
    """The recent tail of one job's events, shared by all of its viewers."""

    def __init__(self, job_id: str, last_seq: int, status: str):
        self.job_id = job_id
        self.frames: list[tuple[int, bytes]] = []
        self.first_seq = last_seq + 1       # seq of frames[0] (or the next event if empty)
        self.last_seq = last_seq
        self.status = status
        self.viewers = 0
        self.cond = threading.Condition()

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    def frames_after(self, pos: int) -> list[tuple[int, bytes]] | None:
        """Frames with seq > pos; None when pos is older than the tail (read the database)."""
        if pos >= self.last_seq:
            return []
        if pos + 1 < self.first_seq:
            return None
        return self.frames[pos + 1 - self.first_seq:]

    def add(self, rows: list[tuple[int, str, str]], last_seq: int, status: str) -> None:
        with self.cond:
            for seq, type, text in rows:
                if seq == self.last_seq + 1:
                    self.frames.append((seq, sse_frame(seq, type, text)))
                    self.last_seq = seq
            if len(self.frames) > TAIL:
                drop = len(self.frames) - TAIL
                del self.frames[:drop]
            self.first_seq = self.frames[0][0] if self.frames else self.last_seq + 1
            # Final only once every event stored before the status change has been read.
            if status not in ACTIVE and self.last_seq >= last_seq:
                self.status = status
            self.cond.notify_all()


class FeedHub:
    def __init__(self, store: JobStore, poll_seconds: float = 0.5):
        self.store = store
        self.poll_seconds = poll_seconds
        self.feeds: dict[str, JobFeed] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-hub", daemon=True)
        self._thread.start()

    def notify(self, job_id: str) -> None:
        """This process stored an event for job_id: refresh now rather than at the next poll."""
        if job_id in self.feeds:
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def subscribe(self, job_id: str) -> JobFeed:
        with self._lock:
            feed = self.feeds.get(job_id)
            if feed is None:
                last_seq, status = self.store.progress([job_id])[job_id]
                feed = self.feeds[job_id] = JobFeed(job_id, last_seq, status)
            feed.viewers += 1
            return feed

    def unsubscribe(self, feed: JobFeed) -> None:
        with self._lock:
            feed.viewers -= 1
            if feed.viewers <= 0 and self.feeds.get(feed.job_id) is feed:
                del self.feeds[feed.job_id]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                self.refresh()
            except Exception as exc:  # keep serving; the next poll retries
                print(f"feed hub: {exc!r}", flush=True)

    def refresh(self) -> None:
        with self._lock:
            feeds = list(self.feeds.values())
        if not feeds:
            return
        progress = self.store.progress([f.job_id for f in feeds])
        for feed in feeds:
            last_seq, status = progress.get(feed.job_id, (feed.last_seq, "error"))
            if last_seq <= feed.last_seq and status == feed.status:
                continue
            rows: list[tuple[int, str, str]] = []
            after = feed.last_seq
            while after < last_seq:
                batch = self.store.events_after(feed.job_id, after, 1000)
                if not batch:
                    break
                rows += batch
                after = batch[-1][0]
            feed.add(rows, last_seq, status)

    def stream(self, job_id: str, after: int, heartbeat: float) -> Iterator[bytes]:
        """SSE bytes for one viewer: history after `after`, then live, then `event: end`."""
        feed = self.subscribe(job_id)
        try:
            yield b"retry: 2000\n\n"
            pos = after
            while True:
                with feed.cond:
                    frames = feed.frames_after(pos)
                    if frames == [] and not feed.finished:
                        feed.cond.wait(heartbeat)
                        frames = feed.frames_after(pos)
                    finished, status = feed.finished, feed.status
                if frames is None:  # behind the in-memory tail: catch up from the database
                    rows = self.store.events_after(job_id, pos, 500)
                    frames = [(seq, sse_frame(seq, type, text)) for seq, type, text in rows]
                if frames:
                    yield b"".join(frame for _, frame in frames)
                    pos = frames[-1][0]
                elif finished:
                    yield f"event: end\ndata: {json.dumps({'status': status})}\n\n".encode()
                    return
                else:
                    yield b": keep-alive\n\n"
        finally:
            self.unsubscribe(feed)
