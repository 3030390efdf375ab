"""Issue 26, F19: viewers of a share link, who may have no identity of their own, cannot open
live logs without limit. Real server process; other client addresses are other loopback addresses."""

from __future__ import annotations

import requests

from tests.attack import figure
from tests.web.web_helpers import open_stream

HANG = [{"kind": "shell", "command": "echo started; sleep 300"}]


def test_f19_share_link_viewers_are_capped_per_link_and_per_address(start_server):
    server = start_server(APP_MAX_STREAMS_PER_LINK=20, APP_MAX_STREAMS_PER_ADDRESS=30)
    owner = server.client()
    job = owner.submit(HANG).json()
    owner.wait_for_event(job["id"], lambda f: f["event"] == "output")
    link = owner.post(f"/api/jobs/{job['id']}/share").json()["url"]
    path = f"/api/jobs/{job['id']}/events"
    viewers = []
    for _ in range(2):   # two browsers that opened the link, and have no identity of their own
        browser = requests.Session()
        assert browser.get(link, timeout=30).status_code == 200
        viewers.append("; ".join(f"{k}={v}" for k, v in browser.cookies.items()))
    opened, statuses = [], {}
    try:
        for n, (viewer, source) in enumerate(zip(viewers, ("127.0.0.3", "127.0.0.4"))):
            for _ in range(40 if n == 0 else 10):
                sock, status, _ = open_stream(server.port, path, viewer, source)
                statuses[status] = statuses.get(status, 0) + 1
                (opened.append(sock) if status == 200 else sock.close())
        owner_cookie = "; ".join(f"{k}={v}" for k, v in owner.http.cookies.items())
        sock, owners, _ = open_stream(server.port, path, owner_cookie, "127.0.0.5")
        sock.close()
        figure("F19", f"50 live logs through one share link (40 from one address, 10 from another), "
                      f"link cap 20: answers {statuses}; the owner's own stream then: {owners}")
        assert statuses == {200: 20, 429: 30} and owners == 200
    finally:
        for sock in opened:
            sock.close()
        owner.post(f"/api/jobs/{job['id']}/cancel")
