"""The agent's end of the model relay (the host's end is agent_sandbox.relay.host).

The sandbox has no network and no model key. `RelayTransport` is an HTTP
transport for the SDK clients: each request goes out as a `model_request`
event on stdout and its reply comes back as one JSON line on stdin, read by
`RelayChannel`. Everything else in the SDK (retries, timeouts, parsing,
errors) runs as it would against the real endpoint.
"""

from __future__ import annotations

import json
import threading
from typing import IO, Any

import httpx2

from agent_sandbox import events as ev

# The SDK clients are pointed here; only the path travels to the host.
RELAY_BASE_URL = "http://model-relay.invalid"
PLACEHOLDER_KEY = "kept-on-the-host"   # the SDKs want a key; the host drops this header
SLACK_SECONDS = 5.0                    # the host's own timeout fires first


class RelayChannel:
    """Sends requests as events and hands each stdin reply to the request waiting for it."""

    def __init__(self, writer: ev.EventWriter, stdin: IO[str]):
        self.writer = writer
        self.step: int | None = None     # the agent's current step, shown with the usage
        self._next = 0
        self._waiting: dict[int, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._closed = ""
        threading.Thread(target=self._read, args=(stdin,), daemon=True, name="relay-replies").start()

    def _read(self, stdin: IO[str]) -> None:
        for line in stdin:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if not isinstance(reply, dict) or reply.get("relay") != 1:
                continue
            with self._lock:
                waiter = self._waiting.pop(reply.get("id"), None)
            if waiter is not None:
                waiter[1].append(reply)
                waiter[0].set()
        with self._lock:
            self._closed = "the host closed the relay channel"
            for done, _ in self._waiting.values():
                done.set()

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; the reply dict, or an error dict on timeout or a closed channel."""
        done, box = threading.Event(), []
        with self._lock:
            if self._closed:
                return {"error": "connect", "message": self._closed}
            self._next += 1
            call_id = self._next
            self._waiting[call_id] = (done, box)
        self.writer.emit(ev.MODEL_REQUEST, {"id": call_id, **request}, step=self.step)
        done.wait(timeout + SLACK_SECONDS)
        with self._lock:
            self._waiting.pop(call_id, None)
        if box:
            return box[0]
        return {"error": "connect", "message": self._closed} if self._closed else \
            {"error": "timeout", "message": f"no answer from the relay within {timeout:g}s"}


class RelayTransport(httpx2.BaseTransport):
    """An httpx2 transport that sends every request through the relay channel."""

    def __init__(self, channel: RelayChannel):
        self.channel = channel

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        timeouts = request.extensions.get("timeout") or {}
        timeout = sum(t for t in (timeouts.get("connect"), timeouts.get("read")) if t) or 600.0
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("authorization", "x-api-key", "host", "content-length")}
        reply = self.channel.call({"method": request.method, "path": request.url.path, "headers": headers,
                                   "body": body, "timeout": timeout}, timeout)
        if reply.get("error") == "timeout":
            raise httpx2.ReadTimeout(reply.get("message", "timeout"), request=request)
        if "status" not in reply:
            raise httpx2.ConnectError(reply.get("message") or "the relay failed", request=request)
        return httpx2.Response(reply["status"], headers=reply.get("headers") or {},
                               content=str(reply.get("body", "")).encode("utf-8"), request=request)


def relay_http_client(channel: RelayChannel) -> httpx2.Client:
    return httpx2.Client(transport=RelayTransport(channel), base_url=RELAY_BASE_URL)
