"""26-F1: previews and table views of agent-written Parquet are bounded whatever the file holds.

A 34 KB zstd Parquet file of 20 rows x 40 MB cells (and a 2 KB one holding the same cell once in
a dictionary, read as 20 rows) used to cost the server 5-6 GB per page view and an 800 MB page.
Here a real server runs a real job that writes both; the job page, the preview API, the table
explorer and its JSON and CSV are asked for, four at a time, while another visitor's requests
are timed. Measured: the server's peak RSS growth (VmHWM after clear_refs), each answer's size
and time, and the other visitor's slowest answer.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.attack import Bystander, figure
from tests.web.web_helpers import wait_finished

CELL = 40 * 1024 * 1024
MAX_GROWTH_MB = 300       # the server's peak RSS growth while serving every view below, 4 at a time (was +5-6 GB)
MAX_PAGE_BYTES = 1_000_000
MAX_SECONDS = 30
OTHER_VISITOR_SECONDS = 2.0


def hostile_files(folder: Path) -> dict[str, bytes]:
    schema = pa.schema([("id", pa.int64()), ("blob", pa.string())])
    with pq.ParquetWriter(folder / "rows.parquet", schema, compression="zstd") as writer:
        for i in range(20):   # one row group per row: 40 MB each once decompressed
            writer.write_table(pa.table({"id": [i], "blob": ["A" * CELL]}, schema=schema))
    blob = pa.DictionaryArray.from_arrays(pa.array([0] * 20, pa.int32()), pa.array(["A" * CELL]))
    pq.write_table(pa.table({"id": pa.array(range(20), pa.int64()), "blob": blob}), folder / "dict.parquet",
                   compression="zstd")
    return {name: (folder / name).read_bytes() for name in ("rows.parquet", "dict.parquet")}


def memory(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM")}


def test_hostile_parquet_previews_cost_the_server_little(start_server, tmp_path):
    files = hostile_files(tmp_path)
    assert all(len(data) < 64 * 1024 for data in files.values()), {n: len(d) for n, d in files.items()}
    server = start_server()
    owner = server.client()
    copy = ("mkdir -p /outputs/rows /outputs/dict && cp /workspace/rows.parquet /outputs/rows/ "
            "&& cp /workspace/dict.parquet /outputs/dict/ && python3 -c \"print('n,note'); "
            "[print(f'{i},' + 'B' * 100000) for i in range(30)]\" > /outputs/text.csv")
    job = owner.submit([{"kind": "shell", "command": copy}], files=files).json()
    assert wait_finished(owner, job["id"])["status"] == "succeeded"
    jid = job["id"]
    views = [f"/jobs/{jid}", f"/jobs/{jid}/tables/text?sort=-note", f"/api/jobs/{jid}/preview/rows/rows.parquet",
             f"/api/jobs/{jid}/preview/dict/dict.parquet", f"/jobs/{jid}/tables/rows", f"/jobs/{jid}/tables/dict", f"/api/jobs/{jid}/tables/rows?limit=20",
             f"/api/jobs/{jid}/tables/dict?sort=-id", f"/jobs/{jid}/tables/rows?sort=blob",
             f"/api/jobs/{jid}/tables/rows?blob__contains=B", f"/api/jobs/{jid}/tables/rows?format=csv",
             f"/jobs/{jid}/tables/rows?offset=5"]
    owner.get(f"/jobs/{jid}/results")  # warm: templates compiled, DuckDB loaded
    pid = server.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")   # VmHWM from here
    before = memory(pid)
    answers: list[tuple[str, int, int, float]] = []

    def attack():
        for path in views:
            start = time.monotonic()
            resp = owner.get(path, timeout=120)
            answers.append((path, resp.status_code, len(resp.content), time.monotonic() - start))

    other = server.client()
    with Bystander(server.base + "/", other.http, every=0.05) as bystander:
        attackers = [threading.Thread(target=attack) for _ in range(4)]
        for t in attackers:
            t.start()
        for t in attackers:
            t.join()
    after = memory(pid)
    growth = after["VmHWM"] - before["VmRSS"]
    slowest = max(a[3] for a in answers)
    figure("F1", f"server RSS {before['VmRSS']} MB before, peak {after['VmHWM']} MB (+{growth} MB, was +5-6 GB "
                 f"per view) over {len(answers)} views 4 at a time, {after['VmRSS']} MB after; largest answer "
                 f"{max(a[2] for a in answers):,} bytes (was 800 MB); slowest {slowest:.2f} s (was 77-86 s); "
                 f"another visitor's start page at worst {bystander.worst:.3f} s over {len(bystander.times)}")
    for path, status, size, seconds in answers:
        assert status in (200, 400), (path, status)
        assert size < MAX_PAGE_BYTES, (path, size)
        assert seconds < MAX_SECONDS, (path, seconds)
    assert growth < MAX_GROWTH_MB, f"+{growth} MB"
    assert bystander.worst < OTHER_VISITOR_SECONDS and not bystander.failures, bystander.failures
    page = owner.get(f"/jobs/{jid}").text
    assert page.count("(too large to show: ") == 20 + 20, "each table's 20 preview rows say so"
    refused = owner.get(f"/api/jobs/{jid}/tables/rows?sort=blob")
    assert refused.status_code == 400 and "its cells are too large (40.0 MB per row" in refused.json()["error"]
    long_text = owner.get(f"/api/jobs/{jid}/tables/text").json()
    assert long_text["rows"][0][1].endswith("…") and len(long_text["rows"][0][1]) == 200, "a long cell is cut"
    assert "Traceback" not in server.read_log()
