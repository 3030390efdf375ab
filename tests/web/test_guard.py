"""The pieces of frontend/guard.py on their own: the quiet log, the address behind proxies, the rate limit."""

from __future__ import annotations

import logging
import time

from frontend.guard import Networks, QuietLog, RateLimit, client_address


def test_the_same_error_in_a_tight_loop_is_logged_once_per_interval(caplog):
    quiet = QuietLog(logging.getLogger("test.quiet"), interval=0.2)
    with caplog.at_level(logging.ERROR, logger="test.quiet"):
        for _ in range(10_000):
            quiet.log(logging.ERROR, "accept failed: %s", "Too many open files", key="emfile")
        quiet.log(logging.ERROR, "another error")
        time.sleep(0.25)
        quiet.log(logging.ERROR, "accept failed: %s", "Too many open files", key="emfile")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["accept failed: Too many open files", "another error",
                     "accept failed: Too many open files (9999 more like it in the last 0.2 s)"]


def test_the_client_address_behind_trusted_proxies():
    proxies = Networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("127.0.0.1", ["203.0.113.9"], proxies) == "203.0.113.9"
    assert client_address("127.0.0.1", ["1.1.1.1, 203.0.113.9, 10.1.2.3"], proxies) == "203.0.113.9", \
        "the last address a trusted proxy names; what the client claimed before it does not count"
    assert client_address("127.0.0.1", ["1.1.1.1", "203.0.113.9"], proxies) == "203.0.113.9"
    assert client_address("198.51.100.7", ["203.0.113.9"], proxies) == "198.51.100.7", "not a proxy: ignored"
    assert client_address("127.0.0.1", [], proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", ["203.0.113.9"], Networks([])) == "127.0.0.1", "off by default"


def test_the_rate_limit_allows_a_minutes_worth_then_refills():
    limit = RateLimit(per_minute=60)  # one a second
    assert [limit.take("a") for _ in range(60)] == [0.0] * 60
    wait = limit.take("a")
    assert 0 < wait <= 1.0
    assert limit.take("b") == 0.0, "per address"
    time.sleep(wait + 0.05)
    assert limit.take("a") == 0.0
