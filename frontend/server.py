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
chunked_write, close_connection; HTTPConnection.socket, linger; the pool's
_threads): cheroot is pinned in pyproject.toml to the version checked.

Plain threads throughout (no gevent), so the Modal and Docker SDKs run as
they are documented to.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

from cheroot import wsgi

from frontend.feed import FeedHub

# Idle keep-alive connections wait in cheroot's selector without a thread; cheroot's default is 10.
KEEP_ALIVE_LIMIT = 10000


class HandoffGateway(wsgi.Gateway_10):
    """Offers the app `environ["frontend.handoff"](hub, job_id, after)` on HTTP/1.1 GETs.

    A view that calls it returns its response with an empty body; once the app
    has returned, that response's headers are sent and the connection goes to
    the hub, which writes the body (chunked) from then on.
    """

    def respond(self):
        taken: dict = {}
        if self.req.response_protocol == "HTTP/1.1" and self.req.method == b"GET":  # the hub writes chunks
            self.env["frontend.handoff"] = lambda hub, job_id, after: taken.update(
                hub=hub, job_id=job_id, after=after)
        response = self.req.server.wsgi_app(self.env, self.start_response)
        try:
            if taken and self.req.status.startswith(b"200"):
                self.hand_over(**taken)
                return
            for chunk in filter(None, response):  # cheroot's own loop, as in Gateway.respond
                if not isinstance(chunk, bytes):
                    raise ValueError("WSGI Applications must yield bytes")
                self.write(chunk)
        finally:
            self.req.ensure_headers_sent()
            if hasattr(response, "close"):
                response.close()

    def hand_over(self, hub: FeedHub, job_id: str, after: int) -> None:
        req, conn = self.req, self.req.conn
        req.close_connection = True  # the stream is this connection's last response
        try:
            req.ensure_headers_sent()  # the app's headers, plus chunked coding and Connection: close
            conn.wfile.flush()
        except OSError:
            return  # the viewer is gone already
        # From here the hub writes the body: cheroot must neither end the chunked body
        # nor shut the connection down.
        req.chunked_write = False
        conn.linger = True
        hub.attach(job_id, after, socket.socket(fileno=os.dup(conn.socket.fileno())))


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


def make_server(app, host: str, port: int, threads: int, max_threads: int) -> wsgi.Server:
    raise_open_files_limit()
    server = wsgi.Server((host, port), app, numthreads=threads, max=max_threads,
                         request_queue_size=4096, timeout=30, shutdown_timeout=2,
                         server_name="sandbox-app")
    server.gateway = HandoffGateway
    server.keep_alive_conn_limit = KEEP_ALIVE_LIMIT
    return server


def serve(server: wsgi.Server) -> None:
    server.prepare()
    threading.Thread(target=grow_pool_on_demand, args=(server,), name="pool-grower", daemon=True).start()
    server.serve()
