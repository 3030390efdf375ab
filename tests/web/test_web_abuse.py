"""An abusive client against a real server process: floods of event streams, slow clients,
minted identities. Other client addresses are other loopback addresses (127.0.0.2, ...),
which Linux routes to our server on 127.0.0.1. Every loop here is bounded and ends by itself.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from web_helpers import Client, SlowClients, SourceAddress, open_stream

HANG = [{"kind": "shell", "command": "echo started; sleep 300"}]


def cookie_header(client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())


def open_streams(port: int, path: str, cookie: str, source: str, n: int) -> tuple[list[socket.socket], list[str]]:
    """n streams; returns (the open ones, the heads of the refused ones, which are closed)."""
    kept, refused = [], []
    for _ in range(n):
        sock, status, head = open_stream(port, path, cookie, source)
        if status == 200:
            kept.append(sock)
        else:
            refused.append(head)
            sock.close()
    return kept, refused


def close_all(socks) -> None:
    for s in socks:
        s.close()


def shared_viewer(server, owner: Client, job_id: str) -> str:
    """A cookie that reads the job through its share link and has no identity of its own."""
    link = owner.post(f"/api/jobs/{job_id}/share").json()["url"]
    viewer = requests.Session()
    assert viewer.get(link if link.startswith("http") else server.base + link, timeout=30).status_code == 200
    return "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())


def stream_status(server, owner: Client, job_id: str, source: str = "127.0.0.1") -> int:
    sock, status, _ = open_stream(server.port, f"/api/jobs/{job_id}/events", cookie_header(owner), source)
    sock.close()
    return status


def test_event_streams_are_capped_per_owner_and_per_address_and_everyone_else_is_served(start_server):
    server = start_server(APP_MAX_STREAMS_PER_LINK=1000)   # (its own cap: tests/hostile/test_web_streams.py)
    owner = server.client()
    job = owner.submit(HANG).json()
    owner.wait_for_event(job["id"], lambda f: f["event"] == "output")
    path = f"/api/jobs/{job['id']}/events"

    mine, refused = open_streams(server.port, path, cookie_header(owner), "127.0.0.2", 25)
    assert len(mine) == 20 and len(refused) == 5, "20 live logs per visitor (APP_MAX_STREAMS_PER_OWNER)"
    assert all(" 429 " in h.split("\r\n")[0] and "Retry-After: 10" in h for h in refused), refused[0]

    viewer = shared_viewer(server, owner, job["id"])  # no identity: only the address's cap applies
    theirs, refused = open_streams(server.port, path, viewer, "127.0.0.3", 205)
    assert len(theirs) == 200 and len(refused) == 5, "200 live logs per client address"
    assert all(" 429 " in h.split("\r\n")[0] for h in refused)

    other = server.client()  # someone else is served as usual meanwhile
    done = other.submit([{"kind": "shell", "command": "echo hello"}]).json()
    assert other.events(done["id"])[-1]["data"]["status"] == "succeeded"
    assert stream_status(server, owner, job["id"], "127.0.0.4") == 429, "the owner's cap holds from any address"

    close_all(mine + theirs)
    deadline = time.monotonic() + 10
    while stream_status(server, owner, job["id"], "127.0.0.2") != 200:  # the hub sees them closed
        assert time.monotonic() < deadline, "closed streams give their places back"
        time.sleep(0.2)
    owner.post(f"/api/jobs/{job['id']}/cancel")


def test_a_stream_flood_stays_below_the_descriptor_limit_with_503s_and_a_quiet_log(start_server):
    # 1,024 descriptors: the socket budget is 1,024 less a reserve of 3 per server thread + 256.
    server = start_server(open_files=1024, APP_SERVER_MAX_THREADS=64, APP_MAX_STREAMS_PER_OWNER=5000,
                          APP_MAX_STREAMS_PER_ADDRESS=5000)
    budget = 1024 - (3 * 64 + 256)
    owner = server.client()
    job = owner.submit(HANG).json()
    owner.wait_for_event(job["id"], lambda f: f["event"] == "output")
    path = f"/api/jobs/{job['id']}/events"
    streams, refused = open_streams(server.port, path, cookie_header(owner), "127.0.0.2", budget)
    assert len(streams) == budget * 9 // 10, "streams may take 9/10 of the sockets"
    assert refused and all(" 503 " in h.split("\r\n")[0] and "Retry-After: 10" in h for h in refused)
    fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    assert fds < 1024 - 200, f"room to spare: {fds} descriptors open"

    other = server.client(source="127.0.0.5")  # pages and the API still work for everyone
    assert other.get("/").status_code == 200
    done = other.submit([{"kind": "write_file", "path": "x.txt", "content": "x"}]).json()
    deadline = time.monotonic() + 60
    while other.get(f"/api/jobs/{done['id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert other.get(f"/api/jobs/{done['id']}/outputs/x.txt").text == "x"

    # Plain connections past the budget are refused as they arrive, from many addresses.
    idle = []
    for i in range(150):
        try:
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                                 source_address=(f"127.0.1.{i + 1}", 0)))
        except OSError:
            break
    time.sleep(1)
    refused_at_accept = 0
    for sock in idle:
        sock.setblocking(False)
        try:
            refused_at_accept += sock.recv(100).startswith(b"HTTP/1.1 503")
        except BlockingIOError:
            pass  # admitted: it waits for a request
    assert refused_at_accept > 0
    assert other.get("/api/session").status_code == 200

    close_all(streams + idle)
    log = server.read_log()
    assert "Too many open files" not in log and "Traceback" not in log
    assert len(log) < 100_000, "the log did not fill up"
    deadline = time.monotonic() + 10
    while stream_status(server, owner, job["id"]) != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    owner.post(f"/api/jobs/{job['id']}/cancel")


@pytest.mark.parametrize("count, per_address", [(1100, 1100), (1000, 50)], ids=["one-address", "20-addresses"])
def test_slow_clients_do_not_starve_normal_requests(start_server, count, per_address):
    """1,100 connections from one address (most refused at once), or 1,000 from 20 addresses
    (all admitted), each sending a header line every 4 s and coming back when cut off, for
    15 s (the header timeout lowered to 4 s, so that is several rounds of it); a normal
    visitor's requests all complete meanwhile."""
    server = start_server(APP_HEADER_TIMEOUT=4)
    stop = threading.Event()
    seen: dict[str, int] = {}
    # too long: past APP_HEADER_TIMEOUT (4 s) + 5 s
    attack = SlowClients(server.port, count, per_address, every=4.0, too_long=9.0)

    attacker = threading.Thread(target=lambda: seen.update(attack.run(stop)), daemon=True)
    attacker.start()
    visitor = server.client()
    ok, started = 0, time.monotonic()
    try:
        while time.monotonic() - started < 15:  # (a slow client holding a thread would hold it 4 s)
            assert visitor.get("/", timeout=5).status_code == 200
            assert visitor.get("/api/session", timeout=5).status_code == 200
            ok += 1
            time.sleep(0.25)
    finally:
        stop.set()
        attacker.join(30)
    assert ok > 12   # at least 0.8 visits a second, as with the default timeout's 20 in 25 s
    assert seen["408"] > 0, "slow requests are cut off with a 408 (APP_HEADER_TIMEOUT)"
    assert (seen["503"] > 0) == (per_address > 64), "connections past an address's cap are refused at once"
    assert seen["held_too_long"] == 0
    assert len(server.read_log()) < 100_000


def test_anonymous_visitors_of_one_address_share_a_cap_and_new_identities_are_rate_limited(start_server):
    server = start_server(APP_WORKERS=1, APP_MAX_ACTIVE_PER_OWNER=5, APP_MAX_ACTIVE_PER_ADDRESS=10)  # the defaults
    accepted, refusals = 0, []
    for _ in range(21):  # 21 fresh cookies, up to 100 jobs, from one address
        try:
            minted = Client(server.base, source="127.0.0.2")
        except KeyError:  # GET /api/session refused a new identity: 429 (asserted below)
            continue
        for _ in range(5):
            if accepted + len(refusals) >= 100:
                break
            resp = minted.submit(HANG)
            if resp.status_code == 201:
                accepted += 1
            else:
                assert resp.status_code == 429 and resp.headers["Retry-After"].isdigit()
                refusals.append(resp.json()["error"])
    assert accepted == 10, "APP_MAX_ACTIVE_PER_ADDRESS"
    assert any("visitors from your address already have 10 jobs" in r for r in refusals)
    fresh = requests.Session()
    fresh.mount("http://", SourceAddress("127.0.0.2"))
    for _ in range(40):  # 20 new identities a minute per address (APP_NEW_VISITORS_PER_ADDRESS)
        fresh.cookies.clear()
        resp = fresh.get(server.base + "/api/session", timeout=30)
        if resp.status_code != 200:
            break
    assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 3, resp.text
    assert "too many new visitors from your address" in resp.json()["error"]
    assert fresh.get(server.base + "/", timeout=30).status_code == 200, "pages need no identity"
    newcomer = Client(server.base, source="127.0.0.3")
    assert newcomer.submit([{"kind": "shell", "command": "echo hi"}]).status_code == 201


def test_named_users_count_per_user_not_per_address(start_server):
    server = start_server(APP_WORKERS=1, APP_TRUSTED_USER_HEADER="X-User", APP_TRUSTED_PROXIES="127.0.0.2",
                          APP_MAX_ACTIVE_PER_OWNER=5)  # the users' proxy is at 127.0.0.2
    for user in ("ann", "bob", "cy"):  # 15 jobs from one address: more than its anonymous cap of 10
        c = Client(server.base, {"X-User": user}, source="127.0.0.2")
        assert [c.submit(HANG).status_code for _ in range(5)] == [201] * 5
        refused = c.submit(HANG)
        assert refused.status_code == 429 and "you already have 5" in refused.json()["error"]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(start_server):
    proxied = start_server(APP_WORKERS=1, APP_TRUSTED_PROXIES="127.0.0.1", APP_MAX_ACTIVE_PER_ADDRESS=2)

    def submit(server, forwarded: str, source: str = "127.0.0.1") -> int:
        c = Client(server.base, {"X-Forwarded-For": forwarded}, source=source)
        return c.submit(HANG).status_code

    assert [submit(proxied, "10.0.0.1") for _ in range(3)] == [201, 201, 429], "per forwarded address"
    assert submit(proxied, "10.0.0.2") == 201
    assert submit(proxied, "10.0.0.1, 10.0.0.9") == 201, "the last address before the proxy counts"
    assert submit(proxied, "10.0.0.9", source="127.0.0.2") == 201
    assert submit(proxied, "10.0.0.8", source="127.0.0.2") == 201
    assert submit(proxied, "10.0.0.7", source="127.0.0.2") == 429, "a client that is no proxy is not believed"
    # The proxy's connections are not capped per address: all its clients share it.
    idle = [socket.create_connection(("127.0.0.1", proxied.port), timeout=10) for _ in range(100)]
    try:
        for sock in idle:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert all(sock.recv(12) == b"HTTP/1.1 200" for sock in idle)
    finally:
        close_all(idle)

    direct = start_server(APP_WORKERS=1, APP_MAX_ACTIVE_PER_ADDRESS=2)  # no proxy trusted: the header is ignored
    assert [submit(direct, f"10.0.1.{i}") for i in range(3)] == [201, 201, 429]


def test_trusted_proxies_are_documented():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "List the proxy in `APP_TRUSTED_PROXIES`" in readme and "`X-Forwarded-For` is ignored" in readme


def test_a_page_whose_live_log_is_refused_tries_again_and_catches_up(start_server, browser):
    from playwright.sync_api import expect

    server = start_server(APP_MAX_STREAMS_PER_OWNER=1)
    owner = server.client()
    job = owner.submit([{"kind": "shell", "command": "echo first line; sleep 3; echo last line"}]).json()
    held, status, _ = open_stream(server.port, job["urls"]["events"], cookie_header(owner), "127.0.0.1")
    assert status == 200
    context = browser.new_context()
    context.add_cookies([{"name": k, "value": v, "url": server.base} for k, v in owner.http.cookies.items()])
    page = context.new_page()
    page.goto(server.base + job["urls"]["page"])
    expect(page.locator("#log")).to_contain_text("live log paused", timeout=15_000)
    held.close()  # its place frees: the page's next try gets in and replays what it missed
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#log")).to_contain_text("last line")
    assert page.locator("#log").inner_text().splitlines().count("first line") == 1, "nothing twice"
    context.close()


def test_out_of_descriptors_sheds_connections_and_logs_it_once_in_a_while(start_server):
    # The caps set far above what the process may open: the server does run out of descriptors.
    server = start_server(open_files=256, APP_MAX_CONNECTIONS=100_000, APP_MAX_CONNECTIONS_PER_ADDRESS=0,
                          APP_SERVER_THREADS=8, APP_SERVER_MAX_THREADS=16)
    visitor = server.client()
    flood = []
    for i in range(400):
        flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                              source_address=(f"127.0.3.{i % 250 + 1}", 0)))
    time.sleep(3)  # the server keeps shedding what it cannot accept; no loop spins, no log fills
    shed = 0
    for sock in flood:
        sock.setblocking(False)
        try:
            shed += sock.recv(1) == b""
        except (BlockingIOError, ConnectionResetError):
            shed += 0
    close_all(flood)
    log = server.read_log()
    assert log.count("out of file descriptors") in (1, 2), log[-2000:]
    assert len(log) < 20_000
    assert shed > 0, "connections it had no descriptor for were closed, not left waiting"
    deadline = time.monotonic() + 10
    while True:  # once the flood is gone, everyone is served again
        try:
            if visitor.get("/api/session", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert server.proc.poll() is None
