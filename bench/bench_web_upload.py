"""Server memory while a large file is uploaded (target: RSS growth <= 64 MB for 1 GB).

The client streams a multipart body generated on the fly (never built in
memory on either side); the server's RSS is sampled every 50 ms from
/proc while the upload runs.

    .venv/bin/python bench/bench_web_upload.py [--mb 1024]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "web"))
from web_helpers import Server  # noqa: E402

MB = 1024 * 1024
BOUNDARY = "----bench-upload-boundary"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Body:
    """An iterable body with a known length, so requests streams it with a Content-Length."""

    def __init__(self, length: int, chunks):
        self.length, self.chunks = length, chunks

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return iter(self.chunks())


def multipart(size_mb: int) -> tuple[int, callable]:
    fields = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nscripted\r\n"
              f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"script\"\r\n\r\n"
              f"{json.dumps([{'kind': 'shell', 'command': 'ls -l /workspace'}])}\r\n"
              f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.csv\"\r\n"
              f"Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = (b"0123456789,abcdefghij,3.14159\n" * (MB // 30 + 1))[:MB]

    def body():
        yield fields
        for _ in range(size_mb):
            yield block
        yield tail

    return len(fields) + size_mb * MB + len(tail), body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-web-upload-"))
    server = Server(root, {"APP_MODELS": "scripted", "APP_MAX_FILE_MB": str(args.mb + 64),
                           "APP_MAX_REQUEST_MB": str(args.mb + 128)}).start()
    try:
        client = server.client()
        client.get("/")  # warm up templates and the session before the baseline
        time.sleep(0.5)
        base = rss_mb(server.proc.pid)
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(server.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        length, body = multipart(args.mb)
        t0 = time.perf_counter()
        resp = client.post("/api/jobs", data=Body(length, body), timeout=1200,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        took = time.perf_counter() - t0
        stop.set()
        sampler.join()
        assert resp.status_code == 201, resp.text
        job = resp.json()
        stored = job["files"][0]["size"]
        assert stored == args.mb * MB, stored
        print(f"upload of {args.mb} MB: {took:.1f} s ({args.mb / took:.0f} MB/s), stored {stored} bytes")
        print(f"server RSS: {base:.0f} MB before, {peak[0]:.0f} MB peak during the upload, "
              f"growth {peak[0] - base:.0f} MB (target <= 64 MB)")
        frames = client.events(job["id"])
        print(f"the job then ran: {frames[-1]['data']['status']}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
