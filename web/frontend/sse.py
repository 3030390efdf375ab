"""The event stream's wire format (Server-Sent Events), written in one place.

Both delivery paths (feed.py: the hub's sockets and the WSGI generator) send
these same bytes; the view sends SSE_HEADERS with them.
"""

from __future__ import annotations

import json

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # with text/event-stream
RETRY = b"retry: 2000\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def sse_frame(seq: int, type: str, event_json: str) -> bytes:
    # json.dumps never emits a raw newline, so one data: line is enough.
    return f"id: {seq}\nevent: {type}\ndata: {event_json}\n\n".encode()


def end_frame(status: str) -> bytes:
    return f"event: end\ndata: {json.dumps({'status': status})}\n\n".encode()


def chunked(data: bytes) -> bytes:
    # HTTP/1.1 chunked coding, so clients see each frame as soon as it arrives.
    return b"%x\r\n%s\r\n" % (len(data), data)
