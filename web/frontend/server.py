"""The production server: cheroot (CherryPy's threaded WSGI server) plus a socket hand-over for SSE.

Ordinary requests run on cheroot's thread pool (which grows on demand). An
event stream would hold a thread for as long as the viewer watches, and
thousands of threads each waking per event do not keep up (measured: p99
in seconds at 2,000 viewers). So once the Flask view has checked the request,
it calls `environ["frontend.handoff"]` and returns its response with an empty
body: cheroot sends that response's headers (as the app and its after_request
made them), then we take the connection's socket away from cheroot and give
it to the FeedHub, whose single selector thread writes every new frame to
every viewer.

This reads and sets cheroot internals (HTTPRequest.status, sent_headers,
chunked_write, close_connection; HTTPConnection.socket, linger, rfile's
buffer; the connection manager's selector; the pool's _threads): cheroot is
pinned in pyproject.toml to the version checked.

Plain threads throughout (no gevent), so the Modal and Docker SDKs run as
they are documented to.

Abuse is handled here, where connections are (limits in guard.py): a
connection past its address's cap or the server's socket budget is refused
with a 503 as it is accepted; a connection gets a worker thread only once
its request line and headers have all arrived (cheroot would give it one at
once, and a slow client would hold it), and one whose line and headers are
not in within the header timeout gets a 408 and is closed; running out of file
descriptors anyway sheds the new connection (a reserve descriptor makes room
to accept and close it) instead of spinning; cheroot's own messages go to
our log, each at most once per interval.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import selectors
import socket
import threading
import time

from cheroot import connections, wsgi
from cheroot import server as cheroot_server

from frontend.feed import FeedHub
from frontend.guard import RETRY_AFTER, ConnectionLimits, Networks, QuietLog

log = logging.getLogger(__name__)
quiet = QuietLog(log)
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
MAX_HEAD = 64 * 1024  # bytes read ahead for a request's line and headers; a longer head goes to cheroot as is

# Idle keep-alive connections wait in cheroot's selector without a thread; cheroot's default is 10.
KEEP_ALIVE_LIMIT = 10000


class HandoffGateway(wsgi.Gateway_10):
    """Offers the app `environ["frontend.handoff"](hub, job_id, after, release)` on HTTP/1.1 GETs.

    A view that calls it returns its response with an empty body; once the app
    has returned, that response's headers are sent and the connection goes to
    the hub, which writes the body (chunked) from then on. `release` is called
    once the stream is over (or was never handed over).
    """

    def respond(self):
        taken: dict = {}
        if self.req.response_protocol == "HTTP/1.1" and self.req.method == b"GET":  # the hub writes chunks
            self.env["frontend.handoff"] = lambda hub, job_id, after, release=None: taken.update(
                hub=hub, job_id=job_id, after=after, release=release or (lambda: None))
        response = self.req.server.wsgi_app(self.env, self.start_response)
        try:
            if taken and self.req.status.startswith(b"200"):
                self.hand_over(**taken)
                return
            if taken:
                taken["release"]()
            for chunk in filter(None, response):  # cheroot's own loop, as in Gateway.respond
                if not isinstance(chunk, bytes):
                    raise ValueError("WSGI Applications must yield bytes")
                self.write(chunk)
        finally:
            self.req.ensure_headers_sent()
            if hasattr(response, "close"):
                response.close()

    def hand_over(self, hub: FeedHub, job_id: str, after: int, release) -> None:
        req, conn = self.req, self.req.conn
        req.close_connection = True  # the stream is this connection's last response
        try:
            req.ensure_headers_sent()  # the app's headers, plus chunked coding and Connection: close
            conn.wfile.flush()
        except OSError:
            release()
            return  # the viewer is gone already
        # From here the hub writes the body: cheroot must neither end the chunked body
        # nor shut the connection down.
        req.chunked_write = False
        conn.linger = conn.handed_over = True
        hub.attach(job_id, after, socket.socket(fileno=os.dup(conn.socket.fileno())), release)


class DeadlineRequest(cheroot_server.HTTPRequest):
    """A request whose line and headers must arrive within the header timeout."""

    def parse_request(self):
        limits = self.server.limits
        limits.reading(self.conn)
        try:
            super().parse_request()
        finally:
            limits.done_reading(self.conn)


class CountedConnection(cheroot_server.HTTPConnection):
    RequestHandlerClass = DeadlineRequest
    handed_over = False

    def close(self):
        self.server.limits.release(self)
        if not self.handed_over:
            return super().close()
        # The hub has a descriptor of its own for this socket: ours goes now, without the shutdown
        # that would end the stream (cheroot's linger would keep it until a garbage collection).
        for f in (self.rfile, self.wfile, self.socket):
            try:
                f.close()
            except OSError:
                pass


class LimitedConnections(connections.ConnectionManager):
    """cheroot's connection manager, admitting each new connection through the server's limits."""

    def _from_server_socket(self, server_socket):
        try:
            conn = super()._from_server_socket(server_socket)
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS:
                raise
            self.server.shed(server_socket, exc)
            return None
        if conn is None:
            return None
        why = self.server.limits.admit(conn, conn.remote_addr or "")
        if why is not None:
            quiet.log(logging.WARNING, "refusing new connections: %s (this one from %s)", why,
                      conn.remote_addr, key=why[:40])
            refuse(conn, why)
            return None
        return conn


def refuse(conn, why: str) -> None:
    """A short 503 (if the socket takes it at once), then close: nothing is read or waited for."""
    body = f"{why}; try again shortly\n".encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER}\r\nConnection: close\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    try:
        conn.socket.send(head + body, socket.MSG_DONTWAIT)
        conn.socket.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()


class AppServer(wsgi.Server):
    """cheroot's WSGI server with the hand-over gateway, connection limits and quiet logging."""

    ConnectionClass = CountedConnection
    bind_error: OSError | None = None

    def __init__(self, *args, limits: ConnectionLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._reserve_fd = os.open(os.devnull, os.O_RDONLY)  # given up to shed a connection at EMFILE

    def bind(self, family, type, proto=0):
        try:
            return super().bind(family, type, proto)
        except OSError as exc:  # cheroot re-raises it as text; keep it to say what went wrong
            self.bind_error = exc
            raise

    def prepare(self):
        super().prepare()
        self._connections._selector.close()
        self._connections = LimitedConnections(self)

    def process_conn(self, conn):
        """Give a connection to a worker thread only once its request line and headers are in: until
        then it waits in the selector, costing a descriptor and no thread, however slowly they come."""
        if conn.rfile.has_data() or self._head_arrived(conn):
            self.limits.done_reading(conn)
            super().process_conn(conn)

    def _head_arrived(self, conn) -> bool:
        """Read what the client has sent so far, without waiting; True once the headers are complete
        (what was read goes back into the connection's buffer for cheroot to parse)."""
        try:
            conn.socket.setblocking(False)  # a socket with a timeout would wait for data first
            data = conn.socket.recv(MAX_HEAD)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        finally:
            try:
                conn.socket.settimeout(self.timeout)
            except OSError:
                pass
        if data == b"":  # closed by the client, or cut off as too slow
            self.limits.done_reading(conn)
            conn.close()
            return False
        head = getattr(conn, "head", b"")
        if data:
            if not head:
                self.limits.reading(conn)  # the header timeout runs from the first byte
            head += data
        if b"\r\n\r\n" in head or b"\n\n" in head or len(head) >= MAX_HEAD:  # (bare LFs: cheroot says 400)
            conn.rfile._read_buf, conn.rfile._read_pos, conn.head = head, 0, b""  # cheroot's _pyio buffer
            return True
        conn.head, conn.last_used = head, time.time()
        self._connections._selector.register(conn.socket.fileno(), selectors.EVENT_READ, conn)
        return False

    def shed(self, server_socket: socket.socket, exc: OSError) -> None:
        """Out of descriptors: accept the waiting connection with the reserve one and close it at
        once, rather than leave it in the backlog (the selector would wake for it without end)."""
        quiet.log(logging.ERROR, "out of file descriptors (%s) with %d connections open: refusing new ones",
                  exc.strerror, self.limits.open, key="emfile")
        try:
            os.close(self._reserve_fd)
            sock, _ = server_socket.accept()
            sock.close()
        except OSError:
            time.sleep(0.05)  # nothing could be freed: do not spin
        finally:
            try:
                self._reserve_fd = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                pass

    def error_log(self, msg="", level=20, traceback=False):
        # cheroot writes to stderr, each time; ours goes to the log, each message at most every 10 s.
        quiet.log(level, "cheroot: %s", msg, key=str(msg)[:80], exc_info=traceback)

    def cut_slow_requests(self) -> None:
        """Close connections whose request line and headers are overdue, with a 408."""
        while self.ready:
            for conn in self.limits.overdue():
                quiet.log(logging.WARNING, "closing requests whose line and headers took over %g s (this one "
                          "from %s)", self.limits.header_timeout, conn.remote_addr, key="slow")
                try:
                    conn.socket.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                     b"Content-Length: 0\r\n\r\n", socket.MSG_DONTWAIT)
                except OSError:
                    pass
                try:
                    conn.socket.shutdown(socket.SHUT_RDWR)  # the thread reading it stops at once
                except OSError:
                    pass
            time.sleep(0.25)


def grow_pool_on_demand(server: wsgi.Server, spare: int = 16, step: int = 64) -> None:
    """Keep at least `spare` idle threads (cheroot does not grow its pool by itself)."""
    pool = server.requests
    while server.ready:
        if pool.idle < spare and len(pool._threads) < pool.max:
            pool.grow(step)
        else:
            time.sleep(0.05)


def raise_open_files_limit() -> None:
    # One descriptor per open stream: lift the soft limit to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def make_server(app, host: str, port: int, threads: int, max_threads: int,
                limits: ConnectionLimits | None = None) -> AppServer:
    """The server, not yet listening (`listen` binds its port). `app` may be set later
    (server.wsgi_app), so the port is ours before the app touches the database."""
    raise_open_files_limit()
    limits = limits or ConnectionLimits(total=1 << 30, per_address=0, header_timeout=30, trusted=Networks([]))
    server = AppServer((host, port), app, numthreads=threads, max=max_threads, limits=limits,
                       request_queue_size=4096, timeout=30, shutdown_timeout=2, server_name="sandbox-app")
    server.gateway = HandoffGateway
    server.keep_alive_conn_limit = KEEP_ALIVE_LIMIT
    return server


class CannotListen(Exception):
    """The port cannot be had; the message is one line saying why and what to do."""


def listen(server: AppServer) -> None:
    host, port = server.bind_addr
    try:
        server.prepare()
    except OSError as exc:
        err = server.bind_error or exc
        if err.errno == errno.EADDRINUSE:
            raise CannotListen(f"port {port} on {host} is already in use (is the app running already?); "
                               "stop that process, or choose another port with --port or APP_PORT") from None
        raise CannotListen(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def serve(server: AppServer) -> None:
    if not server.ready:
        listen(server)
    for target, name in ((grow_pool_on_demand, "pool-grower"), (AppServer.cut_slow_requests, "slow-requests")):
        threading.Thread(target=target, args=(server,), name=name, daemon=True).start()
    server.serve()
