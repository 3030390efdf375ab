"""Measuring an attack on a real server process (tests/hostile/): its memory, its CPU, what it
stores, and how long another user waits meanwhile.

Every attack test states its bound and prints what it measured (`figure`), so a run with
`-s` gives the figures the issue asks for, before and after a fix.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from pathlib import Path

import requests

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has waited for (a render process, say)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def disk_bytes(*folders: Path) -> int:
    """Bytes the folders really take on disk (allocated blocks: a sparse file counts as what it holds)."""
    # Not frontend.storage.disk_bytes on purpose: the quota tests check the app's own count against this one.
    total = 0
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def figure(finding: str, text: str) -> None:
    """One measured figure, printed (`pytest -s`) and appended to $HOSTILE_FIGURES when set."""
    line = f"[{finding}] {text}"
    print(line, flush=True)
    if os.environ.get("HOSTILE_FIGURES"):
        with open(os.environ["HOSTILE_FIGURES"], "a") as f:
            f.write(line + "\n")


class Bystander:
    """Another user who keeps asking for `url` while an attack runs: `worst` is the longest
    any of their requests took (a request still waiting when the attack ends counts too)."""

    def __init__(self, url: str, session: requests.Session | None = None, every: float = 0.2,
                 timeout: float = 600):
        self.url, self.every, self.timeout = url, every, timeout
        self.http = session or requests.Session()
        self.times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._started_at: float | None = None   # of the request in flight
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        in_flight = self._started_at
        if in_flight is not None:
            self.times.append(time.monotonic() - in_flight)
        self._thread.join(self.timeout)

    @property
    def worst(self) -> float:
        return max(self.times, default=0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._started_at = time.monotonic()
            try:
                resp = self.http.get(self.url, timeout=self.timeout)
                if resp.status_code != 200:
                    self.failures.append(f"{resp.status_code} {resp.text[:100]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            if not self._stop.is_set():
                self.times.append(time.monotonic() - self._started_at)
            self._started_at = None
            self._stop.wait(self.every)


def send_body(port: int, head: str, size: int, chunked: bool = False, step: int = 1 << 20) -> tuple[int, str, int]:
    """Send a request whose body is `size` bytes (a JSON object with one long string), as fast as the
    server takes it, and stop once it answers: (status, response text, bytes of the body sent).
    `head` is the request line and headers, without Content-Length or Transfer-Encoding."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)
    sock.sendall(f"{head}\r\n{framing}\r\nConnection: close\r\n\r\n".encode())
    sent, answer = 0, b""
    with sock:
        while sent < size:
            n = min(step, size - sent)
            piece = (b'{"name": "' + b"A" * (n - 10) if sent == 0 else b"A" * n)[:n]
            if sent + n == size:
                piece = piece[:-2] + b'"}'
            if select.select([sock], [], [], 0)[0]:
                break   # the server has answered (or closed): stop sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except OSError:
                break
            sent += len(piece)
        if chunked and sent >= size:
            try:
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    text = answer.decode(errors="replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return status, text, sent
