"""The agent's end of the model relay (the host's end is agent_sandbox.relay.host).

The sandbox has no network and no model key. `RelayTransport` is an HTTP
transport for the SDK clients: each request goes out as `model_request` frames
on stdout and its reply comes back as frames on stdin (agent_sandbox.relay.wire),
read by `RelayChannel`. Everything else in the SDK (retries, parsing, errors)
runs as it would against the real endpoint.

A model call has one deadline (`RelayChannel.deadline`, set by the model from
AGENT_SANDBOX_MODEL_TIMEOUT): every attempt the SDK makes gets only what is
left of it, and once it has passed the transport answers 408 without sending,
marked not to be retried, so a call never outlives its timeout.
"""

from __future__ import annotations

import json
import threading
import time
from typing import IO, Any

import httpx2

from agent_sandbox import events as ev
from agent_sandbox.relay import wire

# The SDK clients are pointed here; only the path travels to the host.
RELAY_BASE_URL = "http://model-relay.invalid"
PLACEHOLDER_KEY = "kept-on-the-host"   # the SDKs want a key; the host drops this header
SLACK_SECONDS = 5.0                    # the host's own timeout fires first
TIMEOUT_STATUS = 408                   # the answer once a call's deadline has passed


class RelayChannel:
    """Sends requests as frames and hands each reply on stdin to the request waiting for it."""

    def __init__(self, writer: ev.EventWriter, stdin: IO[str]):
        self.writer = writer
        self.step: int | None = None     # the agent's current step, shown with the usage
        self.deadline: float | None = None   # time.monotonic() by which the current model call must end
        self._next = 0
        self._waiting: dict[int, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._closed = ""
        threading.Thread(target=self._read, args=(stdin,), daemon=True, name="relay-replies").start()

    def _read(self, stdin: IO[str]) -> None:
        assembler = wire.Assembler()
        for line in stdin:
            try:
                frame = json.loads(line)
                done = assembler.add(frame) if wire.is_reply(frame) else None
            except (ValueError, RecursionError):   # wire.FrameError too: that reply is lost, its call times out
                continue
            if done is None:
                continue
            with self._lock:
                waiter = self._waiting.pop(done[0], None)
            if waiter is not None:
                waiter[1].append(done[1])
                waiter[0].set()
        with self._lock:
            self._closed = "the host closed the relay channel"
            for event, _ in self._waiting.values():
                event.set()

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; the reply dict, or an error dict on timeout or a closed channel."""
        done = threading.Event()
        box: list[dict[str, Any]] = []   # the reply, once the reader has it
        with self._lock:
            if self._closed:
                return {"error": "connect", "message": self._closed}
            self._next += 1
            call_id = self._next
            self._waiting[call_id] = (done, box)
        try:
            for data in wire.frames(call_id, request):
                # Never mirrored to a log file: the conversation is not part of any log.
                self.writer.emit(ev.MODEL_REQUEST, data, step=self.step, mirror=False)
        except wire.FrameError as exc:
            with self._lock:
                self._waiting.pop(call_id, None)
            return {"status": 413, "headers": {"x-should-retry": "false", "content-type": "application/json"},
                    "body": json.dumps({"error": {"type": "request_too_large", "message": str(exc)}})}
        done.wait(timeout + SLACK_SECONDS)
        with self._lock:
            self._waiting.pop(call_id, None)
        if box:
            return box[0]
        return {"error": "connect", "message": self._closed} if self._closed else \
            {"error": "timeout", "message": f"no answer from the relay within {timeout:g}s"}

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


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
        timeout = max((t for t in (timeouts.get("connect"), timeouts.get("read")) if t), default=600.0)
        left = self.channel.time_left()
        if left is not None:
            if left <= 0:
                return out_of_time(request)
            timeout = min(timeout, left)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("authorization", "x-api-key", "host", "content-length")}
        reply = self.channel.call({"method": request.method, "path": request.url.path, "headers": headers,
                                   "body": body, "timeout": timeout}, timeout)
        if reply.get("error") == "timeout":
            if left is not None:
                return out_of_time(request)
            raise httpx2.ReadTimeout(reply.get("message", "timeout"), request=request)
        if "status" not in reply:
            raise httpx2.ConnectError(reply.get("message") or "the relay failed", request=request)
        return httpx2.Response(reply["status"], headers=reply.get("headers") or {},
                               content=str(reply.get("body", "")).encode("utf-8"), request=request)


def out_of_time(request: httpx2.Request) -> httpx2.Response:
    """The call's deadline has passed: an answer the SDK does not retry."""
    body = {"type": "error", "error": {"type": "timeout", "message": "the model call ran out of time"}}
    return httpx2.Response(TIMEOUT_STATUS, headers={"x-should-retry": "false", "content-type": "application/json"},
                           content=json.dumps(body).encode(), request=request)


def relay_http_client(channel: RelayChannel) -> httpx2.Client:
    return httpx2.Client(transport=RelayTransport(channel), base_url=RELAY_BASE_URL)


def relay_client_options(channel: RelayChannel, retries: int, timeout: float) -> dict[str, Any]:
    """The keyword arguments both SDK clients (anthropic, openai) take to talk through the relay."""
    return {"api_key": PLACEHOLDER_KEY, "base_url": RELAY_BASE_URL, "max_retries": retries, "timeout": timeout,
            "http_client": relay_http_client(channel)}
