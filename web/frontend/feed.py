"""Live event streams: one reader per job, fanned out to every viewer.

`FeedHub` runs one thread. It is woken when this process stores an event, and
on PostgreSQL when any process does (a NOTIFY, heard by the store's listener);
otherwise it polls every `poll_seconds` (SQLite; on PostgreSQL every
NOTICED_POLL seconds, in case a notice was lost). It reads the new events of
every job someone is watching from the database, the one truth, and encodes
each event ONCE as an SSE frame in that job's `JobFeed` tail.

Viewers come in two kinds:
- sockets handed over by our server (server.py): after the request is
  checked, the hub thread owns the socket and writes frames to every viewer
  with non-blocking sends from one selector loop. Thousands of viewers cost
  no threads and no database queries; a viewer too slow to keep up is
  dropped and its browser reconnects with Last-Event-ID;
- a plain WSGI generator (`stream`), one server thread per viewer, for any
  other WSGI server.
Both read the database only to catch up on history older than the tail.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator

from agent_sandbox.events import ACTIVE
from frontend.guard import QuietLog
from frontend.sse import KEEP_ALIVE, RETRY, chunked, end_frame, sse_frame
from frontend.store import EVENTS, JobStore

log = logging.getLogger(__name__)
quiet = QuietLog(log)

TAIL = 2000                    # frames kept in memory per watched job
MAX_PENDING = 4 * 1024 * 1024  # bytes queued for one slow socket before it is dropped
NOTICED_POLL = 5.0             # seconds between polls when the database sends notices


class JobFeed:
    """The recent tail of one job's events, shared by all of its viewers."""

    def __init__(self, job_id: str, last_seq: int, status: str):
        self.job_id = job_id
        self.frames: list[tuple[int, bytes]] = []
        self.first_seq = last_seq + 1       # seq of frames[0] (or the next event if empty)
        self.last_seq = last_seq
        self.status = status
        self.viewers = 0
        self.sockets: set[SocketViewer] = set()
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
                del self.frames[:len(self.frames) - TAIL]
            self.first_seq = self.frames[0][0] if self.frames else self.last_seq + 1
            # Final only once every event stored before the status change has been read.
            if status not in ACTIVE and self.last_seq >= last_seq:
                self.status = status
            self.cond.notify_all()


class SocketViewer:
    def __init__(self, sock: socket.socket, feed: JobFeed, pos: int, release: Callable[[], None]):
        self.sock = sock
        self.feed = feed
        self.pos = pos
        self.release = release  # gives the stream's place in the quota back (guard.StreamQuota)
        self.pending = bytearray()
        self.last_write = time.monotonic()
        self.ending = False  # `end` sent: close once pending is flushed


class FeedHub:
    def __init__(self, store: JobStore, poll_seconds: float = 0.5, heartbeat: float = 15.0):
        self.store = store
        self.poll_seconds = poll_seconds
        self.heartbeat = heartbeat
        self.feeds: dict[str, JobFeed] = {}
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._arrivals: queue.SimpleQueue[tuple[str, int, socket.socket, Callable]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="feed-hub", daemon=True)
        self._thread.start()
        if store.on_notice(EVENTS, self._heard):
            self.poll_seconds = max(poll_seconds, NOTICED_POLL)

    # -- called from any thread ---------------------------------------------

    def notify(self, job_id: str) -> None:
        """This process stored an event for job_id: refresh now rather than at the next poll."""
        if job_id in self.feeds:
            self._dirty.set()
            self._wake()

    def _heard(self, job_id: str | None) -> None:
        """A notice from the database: a job's events or status changed (None: listening just
        (re)started, and what changed meanwhile is unknown: read every watched job again)."""
        if job_id is not None:
            self.notify(job_id)
        elif self.feeds:
            self._dirty.set()
            self._wake()

    def attach(self, job_id: str, after: int, sock: socket.socket,
               release: Callable[[], None] = lambda: None) -> None:
        """Hand over a client socket (response headers already sent) to follow job_id;
        `release` is called once the hub is done with it."""
        sock.setblocking(False)
        self._arrivals.put((job_id, after, sock, release))
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already awake (the pipe is full)

    def subscribe(self, job_id: str) -> JobFeed:
        with self._lock:
            feed = self.feeds.get(job_id)
            created = feed is None
            if feed is None:
                last_seq, status = self.store.progress([job_id])[job_id]
                feed = self.feeds[job_id] = JobFeed(job_id, last_seq, status)
            feed.viewers += 1
        if created:   # a notice heard while progress was read found no feed and was dropped:
            self._dirty.set()   # read once more now rather than at the next poll (a minute
            self._wake()        # on PostgreSQL, where notices stand in for polling)
        return feed

    def unsubscribe(self, feed: JobFeed) -> None:
        with self._lock:
            feed.viewers -= 1
            if feed.viewers <= 0 and self.feeds.get(feed.job_id) is feed:
                del self.feeds[feed.job_id]

    def stream(self, job_id: str, after: int, heartbeat: float) -> Iterator[bytes]:
        """SSE bytes for one viewer on a thread of its own (any WSGI server)."""
        feed = self.subscribe(job_id)
        try:
            yield RETRY
            pos = after
            while True:
                with feed.cond:
                    frames = feed.frames_after(pos)
                    if frames == [] and not feed.finished:
                        feed.cond.wait(heartbeat)
                        frames = feed.frames_after(pos)
                    finished, status = feed.finished, feed.status
                if frames is None:  # behind the in-memory tail: catch up from the database
                    frames = self._history(job_id, pos)
                if frames:
                    yield b"".join(frame for _, frame in frames)
                    pos = frames[-1][0]
                elif finished:
                    yield end_frame(status)
                    return
                else:
                    yield KEEP_ALIVE
        finally:
            self.unsubscribe(feed)

    def _history(self, job_id: str, pos: int) -> list[tuple[int, bytes]]:
        return [(seq, sse_frame(seq, type, text)) for seq, type, text in self.store.events_after(job_id, pos, 500)]

    # -- the hub thread -------------------------------------------------------

    def _run(self) -> None:
        self._next_poll = self._next_beat = time.monotonic()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # one bad socket or query must not end every live log
                quiet.log(logging.ERROR, "event broadcaster error: %r", exc, key=repr(exc)[:80], exc_info=True)
                time.sleep(0.1)

    def _tick(self) -> None:
        timeout = max(0.0, min(self._next_poll, self._next_beat) - time.monotonic())
        for key, mask in self._selector.select(timeout):
            if key.data is None:
                self._drain_wake()
            else:
                self._on_socket(key.data, mask)
        while True:
            try:
                self._adopt(*self._arrivals.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        if self._dirty.is_set() or now >= self._next_poll:
            self._dirty.clear()
            self._next_poll = now + self.poll_seconds
            self.refresh()
        if now >= self._next_beat:
            self._next_beat = now + min(self.heartbeat, 1.0)
            self._keep_alive(now)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

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
            shared: dict[int, tuple[int, bytes]] = {}  # pos -> (new pos, chunk): built once, sent to many
            for viewer in list(feed.sockets):
                self._pump(viewer, shared)

    def _adopt(self, job_id: str, after: int, sock: socket.socket, release: Callable[[], None]) -> None:
        try:
            feed = self.subscribe(job_id)
        except Exception:
            sock.close()
            release()
            return
        viewer = SocketViewer(sock, feed, after, release)
        feed.sockets.add(viewer)
        self._selector.register(sock, selectors.EVENT_READ, viewer)
        self._send(viewer, RETRY)
        self._pump(viewer)

    def _pump(self, viewer: SocketViewer, shared: dict | None = None) -> None:
        """Send the viewer everything it has not had yet, until its socket is full."""
        feed = viewer.feed
        while not viewer.pending and not viewer.ending and viewer.sock.fileno() != -1:
            if shared is not None and viewer.pos in shared:
                viewer.pos, chunk = shared[viewer.pos]
                self._send(viewer, chunk, framed=True)
                continue
            frames = feed.frames_after(viewer.pos)
            if frames is None:
                frames = self._history(feed.job_id, viewer.pos)
            if frames:
                chunk = chunked(b"".join(frame for _, frame in frames))
                if shared is not None:
                    shared[viewer.pos] = (frames[-1][0], chunk)
                viewer.pos = frames[-1][0]
                self._send(viewer, chunk, framed=True)
            elif feed.finished:
                viewer.ending = True
                self._send(viewer, end_frame(feed.status))
            else:
                return

    def _send(self, viewer: SocketViewer, data: bytes, framed: bool = False) -> None:
        if not framed:
            data = chunked(data)
        if viewer.ending:
            data += b"0\r\n\r\n"
        if viewer.pending:
            viewer.pending += data
        else:
            try:
                sent = viewer.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return self._drop(viewer)
            if sent < len(data):
                viewer.pending += data[sent:]
                self._selector.modify(viewer.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, viewer)
        viewer.last_write = time.monotonic()
        if len(viewer.pending) > MAX_PENDING:
            self._drop(viewer)  # too slow: its browser reconnects with Last-Event-ID and catches up
        elif viewer.ending and not viewer.pending:
            self._drop(viewer)

    def _on_socket(self, viewer: SocketViewer, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                if not viewer.sock.recv(4096):
                    return self._drop(viewer)  # the client went away
            except BlockingIOError:
                pass
            except OSError:
                return self._drop(viewer)
        if mask & selectors.EVENT_WRITE and viewer.pending:
            try:
                sent = viewer.sock.send(viewer.pending)
            except BlockingIOError:
                return
            except OSError:
                return self._drop(viewer)
            del viewer.pending[:sent]
            if not viewer.pending:
                self._selector.modify(viewer.sock, selectors.EVENT_READ, viewer)
                if viewer.ending:
                    return self._drop(viewer)
                self._pump(viewer)

    def _keep_alive(self, now: float) -> None:
        with self._lock:
            feeds = list(self.feeds.values())
        for feed in feeds:
            for viewer in list(feed.sockets):
                if not viewer.pending and now - viewer.last_write >= self.heartbeat:
                    self._send(viewer, KEEP_ALIVE)

    def _drop(self, viewer: SocketViewer) -> None:
        feed = viewer.feed
        if viewer not in feed.sockets:
            return
        feed.sockets.discard(viewer)
        try:
            self._selector.unregister(viewer.sock)
        except (KeyError, ValueError):
            pass
        try:
            viewer.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        viewer.sock.close()
        viewer.release()
        self.unsubscribe(feed)


class NoViewers:
    """The hub of a process that serves no event streams (`--role runner`): nobody to tell."""

    def notify(self, job_id: str) -> None:
        pass

    def stop(self) -> None:
        pass
