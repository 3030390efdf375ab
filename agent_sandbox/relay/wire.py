"""The relay channel's frames: the one place both halves take them from.

A model request travels from the agent to the host as `model_request` events
on the agent's stdout; the reply comes back as `{"relay": 1, ...}` lines on its
stdin. A message of any size up to MAX_MESSAGE_BYTES is cut into frames of at
most CHUNK_CHARS characters of its (ASCII) JSON, so no line comes near the
host's 1 MiB line limit (agent_sandbox.backends.contract.MAX_LINE) even once
escaped again inside the frame:

    agent -> host  {"v":1,"type":"model_request","data":{"id":7,"part":0,"parts":3,"chunk":"{\\"method\\"..."}}
    host -> agent  {"relay":1,"id":7,"part":0,"parts":1,"chunk":"{\\"status\\":200,..."}

`Assembler` puts one message back together and refuses what does not fit:
frames out of order, a message over the limit, more parts than it said.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MODEL_REQUEST = "model_request"   # the event type of a request frame (agent_sandbox.events.MODEL_REQUEST)
REPLY_MARK = "relay"              # a reply line has {"relay": 1}
REPLY_VERSION = 1
CHUNK_CHARS = 256 * 1024          # characters of JSON per frame: escaped twice, still under 1 MiB
MAX_MESSAGE_BYTES = 16 * 1024 * 1024   # the largest request or reply the channel carries
MAX_PARTS = -(-MAX_MESSAGE_BYTES // CHUNK_CHARS)


class FrameError(ValueError):
    """A frame that cannot belong to a message; the message names what was wrong."""


def encode_message(message: dict[str, Any]) -> str:
    """A message as ASCII JSON (every character escaped), so a frame cut anywhere is valid text."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"))


def frames(call_id: int, message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The frames' data of one message; FrameError when it is over the channel's limit."""
    text = encode_message(message)
    if len(text) > MAX_MESSAGE_BYTES:
        raise FrameError(f"{len(text):,} bytes is over the relay channel's limit of {MAX_MESSAGE_BYTES:,}")
    parts = max(1, -(-len(text) // CHUNK_CHARS))
    for part in range(parts):
        yield {"id": call_id, "part": part, "parts": parts,
               "chunk": text[part * CHUNK_CHARS:(part + 1) * CHUNK_CHARS]}


def reply_lines(call_id: int, reply: dict[str, Any]) -> Iterator[str]:
    """The stdin lines of one reply (a reply over the limit becomes an error reply)."""
    try:
        parts = list(frames(call_id, reply))
    except FrameError as exc:
        parts = list(frames(call_id, {"error": "connect", "message": f"the reply was too large: {exc}"}))
    for data in parts:
        yield json.dumps({REPLY_MARK: REPLY_VERSION, **data}, separators=(",", ":"))


def is_reply(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get(REPLY_MARK) == REPLY_VERSION


@dataclass
class Assembler:
    """Puts the frames of one message at a time back together."""

    limit: int = MAX_MESSAGE_BYTES
    call_id: int | None = None
    parts: int = 0
    chunks: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """(id, message) once its last frame is in, else None; FrameError (and a fresh start) when wrong."""
        call_id, part, parts, chunk = data.get("id"), data.get("part", 0), data.get("parts", 1), data.get("chunk")
        if not (isinstance(call_id, int) and isinstance(part, int) and isinstance(parts, int)
                and isinstance(chunk, str) and 0 < parts <= MAX_PARTS and len(chunk) <= CHUNK_CHARS):
            self.reset()
            raise FrameError("a malformed relay frame")
        if part == 0:
            self.reset()
            self.call_id, self.parts = call_id, parts
        elif call_id != self.call_id or part != len(self.chunks) or parts != self.parts:
            self.reset()
            raise FrameError("a relay frame out of order")
        self.size += len(chunk)
        if self.size > self.limit:
            self.reset()
            raise FrameError(f"a request over the relay channel's limit of {self.limit:,} bytes")
        self.chunks.append(chunk)
        if len(self.chunks) < self.parts:
            return None
        text = "".join(self.chunks)
        self.reset()
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise FrameError("a relay message that is not JSON") from None
        if not isinstance(message, dict):
            raise FrameError("a relay message that is not a JSON object")
        return call_id, message

    @property
    def busy(self) -> bool:
        """Part of a message is in."""
        return bool(self.chunks)

    def reset(self) -> None:
        self.call_id, self.parts, self.chunks, self.size = None, 0, [], 0
