"""Issue 26, F12: a JSON or form body is not read up to the upload limit. Real server process;
the attacker sends its body on a raw socket, as fast as the server takes it."""

from __future__ import annotations

import threading
import time

from tests.attack import figure, rss_mb, send_body
from tests.web.web_helpers import wait_finished

MB = 1024 * 1024


def test_f12_a_huge_json_or_form_body_gets_a_413_naming_its_limit(start_server):
    server = start_server()
    owner = server.client()
    job = owner.submit([{"kind": "shell", "command": "echo hi"}]).json()
    wait_finished(owner, job["id"])
    cookie = "; ".join(f"{k}={v}" for k, v in owner.http.cookies.items())
    pid, base = server.proc.pid, rss_mb(server.proc.pid)
    peak, stop = [base], threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak.append(rss_mb(pid))

    threading.Thread(target=watch, daemon=True).start()
    answers = {}
    for name, head, chunked in (
            ("PATCH JSON", f"PATCH /api/jobs/{job['id']} HTTP/1.1\r\nContent-Type: application/json", False),
            ("PATCH JSON, chunked", f"PATCH /api/jobs/{job['id']} HTTP/1.1\r\nContent-Type: application/json", True),
            ("follow-up form", f"POST /api/jobs/{job['id']}/follow-up HTTP/1.1\r\n"
                               "Content-Type: application/x-www-form-urlencoded", False)):
        start = time.monotonic()
        status, text, sent = send_body(server.port, f"{head}\r\nHost: x\r\nCookie: {cookie}\r\n"
                                                    f"X-CSRF-Token: {owner.csrf}", 300 * MB, chunked)
        answers[name] = (status, sent // MB, round(time.monotonic() - start, 1), text.rpartition("\r\n\r\n")[2][:200])
    stop.set()
    figure("F12", f"300 MB bodies: server RSS {base:.0f} MB -> peak {max(peak):.0f} MB (+{max(peak) - base:.0f} MB); "
                  + "; ".join(f"{n}: {s}, {m} MB read, {t} s" for n, (s, m, t, _) in answers.items()))
    assert max(peak) - base < 50
    for name, (status, sent_mb, _, body) in answers.items():
        assert status == 413 and "APP_MAX_BODY_KB" in body, (name, status, body)
        assert sent_mb < 300, name
    upload = owner.submit([], files={"big.csv": b"x" * (5 * MB)})   # uploads keep their own limits
    assert upload.status_code == 201, upload.text
