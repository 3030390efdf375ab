"""What keeps one client from taking the server down: connection, request and stream limits.

- Connections (`ConnectionLimits`, enforced by server.py as connections are
  accepted): at most `per_address` open connections from one client address,
  its event streams not counted (they have caps of their own), and at most
  `total` open sockets in all, event streams included. `total` stays below
  the process's open-files limit with room to spare (`socket_budget`), so
  the server never runs out of descriptors. Past either cap a new connection
  gets a 503 and is closed at once. Connections from a trusted proxy are not
  capped per address: all its clients share its address, and it bounds them.
- Slow requests: a request's line and headers must be in within
  `header_timeout` seconds of its first byte, however slowly they trickle
  (408 and closed past that), so a client sending a header line every few
  seconds holds a server thread only that long.
- Event streams (`StreamQuota`, taken by the events view): per owner, per
  client address and per share link (429), and in all (503), each with Retry-After.
- `QuietLog`: the same message at most once per interval, with a count of
  the ones held back, so no error can flood the log.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

RETRY_AFTER = 10  # seconds, sent with every refusal here


def socket_budget(max_threads: int) -> int:
    """Sockets (connections and event streams) this process may hold: its open-files limit
    less a reserve for what each server thread may open besides its socket (SQLite's three
    files, an upload's temporary file) and for the rest (logs, sandboxes' pipes)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 65536 if soft == resource.RLIM_INFINITY else soft
    reserve = max(limit // 4, 3 * max_threads + 256)
    return max(32, limit - reserve)


class Networks:
    """Addresses and networks ("10.0.0.0/8, 127.0.0.1") to test client addresses against."""

    def __init__(self, specs: Iterable[str]):
        self.networks = [ipaddress.ip_network(spec.strip(), strict=False) for spec in specs if spec.strip()]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def client_address(peer: str, forwarded_for: list[str], proxies: Networks) -> str:
    """The client's address: the peer's, or behind trusted proxies the last X-Forwarded-For
    entry that is not one of them (each proxy appends the address it got the request from;
    what comes before it is whatever the client claimed)."""
    if not proxies or peer not in proxies:
        return peer
    chain = [a.strip() for header in forwarded_for for a in header.split(",") if a.strip()]
    for address in reversed(chain):
        if address not in proxies:
            return address
    return chain[0] if chain else peer


class QuietLog:
    """Log each distinct message at most once per `interval` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, keys: int = 1000):
        self.logger, self.interval, self.keys = logger, interval, keys
        self._seen: dict[str, list] = {}  # key -> [last logged (monotonic), held back since]
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: Any, key: str | None = None, exc_info: bool = False) -> None:
        key = key or msg
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return
            held_back = seen[1] if seen else 0
            if len(self._seen) >= self.keys:
                self._seen.clear()
            self._seen[key] = [now, 0]
        if held_back:
            msg += f" ({held_back} more like it in the last {self.interval:g} s)"
        self.logger.log(level, msg, *args, exc_info=exc_info, stacklevel=2)


class StreamQuota:
    """Open event streams: by owner, by client address, by share link (its viewers may have no
    identity of their own), in all."""

    def __init__(self, total: int, per_owner: int, per_address: int, per_link: int = 1 << 30):
        self.max_total, self.per_owner, self.per_address, self.per_link = total, per_owner, per_address, per_link
        self.by_owner: Counter[str] = Counter()
        self.by_address: Counter[str] = Counter()
        self.by_link: Counter[str] = Counter()
        self.total = 0
        self._lock = threading.Lock()

    def acquire(self, owner: str, address: str, link: str = "") -> tuple[int, str] | None:
        """Count one more stream (`link`: the share token it is read through, if any);
        or (status, why) when a cap says no."""
        with self._lock:
            if self.total >= self.max_total:
                return 503, "the server has as many live logs open as it can hold; try again shortly"
            if owner and self.by_owner[owner] >= self.per_owner:
                return 429, (f"you already have {self.per_owner} live logs open; "
                             "close some tabs showing a job, or try again shortly")
            if self.by_address[address] >= self.per_address:
                return 429, f"{self.per_address} live logs are already open from your address; try again shortly"
            if link and self.by_link[link] >= self.per_link:
                return 429, f"{self.per_link} live logs are already open through this share link; try again shortly"
            for counter, key in self._keys(owner, address, link):
                counter[key] += 1
            self.total += 1
            return None

    def _keys(self, owner: str, address: str, link: str) -> list[tuple[Counter[str], str]]:
        return [(self.by_owner, owner), (self.by_address, address)] + ([(self.by_link, link)] if link else [])

    def releaser(self, owner: str, address: str, link: str = "") -> Callable[[], None]:
        """The call that gives this stream's place back (only its first call counts)."""
        done = threading.Event()

        def release() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                self.total -= 1
                for counter, key in self._keys(owner, address, link):
                    counter[key] -= 1
                    if counter[key] <= 0:
                        del counter[key]
        return release


class ConnectionLimits:
    """Open connections by client address and in all (see the module's docstring)."""

    def __init__(self, total: int, per_address: int, header_timeout: float, trusted: Networks,
                 streams: Callable[[], int] = lambda: 0):
        self.max_total, self.per_address, self.header_timeout = total, per_address, header_timeout
        self.trusted = trusted
        self.streams = streams  # open event streams: sockets too, no longer the server's connections
        self.by_address: Counter[str] = Counter()
        self.open = 0
        self.refused: Counter[str] = Counter()  # why -> how many, for the log and the benchmark
        self._counted: dict[int, str] = {}      # id(connection) -> its address
        self._reading: dict[Any, float] = {}    # connection -> when its request must be in
        self._lock = threading.Lock()

    def admit(self, conn: Any, address: str) -> str | None:
        """Count a new connection; or why it must be refused."""
        with self._lock:
            if self.open + self.streams() >= self.max_total:
                why = "the server has as many connections open as it can hold"
            elif self.per_address and address not in self.trusted and self.by_address[address] >= self.per_address:
                why = f"{self.per_address} connections are already open from your address"
            else:
                self.by_address[address] += 1
                self.open += 1
                self._counted[id(conn)] = address
                return None
            self.refused[why] += 1
            return why

    def release(self, conn: Any) -> None:
        with self._lock:
            address = self._counted.pop(id(conn), None)
            if address is None:
                return
            self.open -= 1
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]

    def reading(self, conn: Any) -> None:
        """A request started arriving on `conn`: its line and headers are due within header_timeout."""
        with self._lock:
            self._reading[conn] = time.monotonic() + self.header_timeout

    def done_reading(self, conn: Any) -> None:
        with self._lock:
            self._reading.pop(conn, None)

    def overdue(self) -> list[Any]:
        """Connections whose request is still incomplete past its deadline (forgotten here)."""
        now = time.monotonic()
        with self._lock:
            late = [conn for conn, due in self._reading.items() if due <= now]
            for conn in late:
                del self._reading[conn]
        if late:
            with self._lock:
                self.refused["request line and headers too slow"] += len(late)
        return late


class RateLimit:
    """At most `per_minute` events per key (a client address) in any minute: a bucket per key
    that holds `per_minute` and refills continuously."""

    def __init__(self, per_minute: int, keys: int = 100_000):
        self.per_minute, self.keys = per_minute, keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when `key` may have one more now (it is counted); else seconds until it may."""
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / rate
            if len(self._buckets) >= self.keys:  # forget the full buckets: they are the default
                self._buckets = {k: v for k, v in self._buckets.items()
                                 if v[0] + (now - v[1]) * rate < self.per_minute}
            self._buckets[key] = (tokens - 1, now)
            return 0.0
