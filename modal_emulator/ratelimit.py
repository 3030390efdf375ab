"""Modal's sandbox-creation rate limit, modelled as a token bucket.

Off by default. When on (--create-rate, or POST /emulator/limits), a
SandboxCreateV2 over the rate fails with RESOURCE_EXHAUSTED carrying Modal's
retry policy (how long to wait), which the client honours by itself, waiting
and retrying without end unless MODAL_MAX_THROTTLE_WAIT caps it.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    def __init__(self, rate: float = 0.0):
        self._lock = threading.Lock()
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """`rate` calls per second on average, bursts up to max(1, rate); 0 = unlimited."""
        if rate < 0:
            raise ValueError("rate must be >= 0")
        with self._lock:
            self.rate = rate
            self.capacity = max(1.0, rate)
            self._tokens = self.capacity
            self._stamp = time.monotonic()

    def wait_needed(self) -> float:
        """0 and a call is taken, or the seconds until one may be."""
        with self._lock:
            if not self.rate:
                return 0.0
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate
