"""Idempotency keys, honoured as Modal's server does.

The client sends `x-idempotency-key` with every unary control-plane call and
keeps the key across its own retries of that call. A retry of a call that
took effect (its answer was lost on the way back) must get the same answer,
not do it twice: a second sandbox nobody knows about. Answers are kept per
(RPC, key) for a while; a retry that arrives while the first attempt still
runs waits for it. A call that failed is not kept: its retry runs again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

KEY_HEADER = "x-idempotency-key"
KEPT_ANSWERS = 10_000
KEPT_SECONDS = 600.0


class _Entry:
    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.response: Any = None
        self.at = time.monotonic()


class IdempotentCalls:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    async def run(self, rpc: str, key: str, call: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """(answer, replayed): the answer an earlier attempt with this key gave, else `call()`'s."""
        if not key:
            return await call(), False
        self._expire()
        entry = self._entries.get((rpc, key))
        if entry is not None:
            await entry.done.wait()
            if entry.response is not None:
                return entry.response, True
        entry = self._entries[(rpc, key)] = _Entry()
        try:
            entry.response = await call()
        finally:
            entry.done.set()
            if entry.response is None and self._entries.get((rpc, key)) is entry:
                del self._entries[(rpc, key)]
        return entry.response, False

    def _expire(self) -> None:
        now = time.monotonic()
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if len(self._entries) <= KEPT_ANSWERS and now - oldest.at < KEPT_SECONDS:
                return
            del self._entries[key]
