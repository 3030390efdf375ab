"""Issue 26, F9 (the web side): one owner's jobs cannot fill the server's disk, and results
do not stay for ever when the operator says so. Real server process, real local sandbox; the
agent writes real (not sparse) data."""

from __future__ import annotations

import time

from tests.attack import disk_bytes, figure
from tests.web.web_helpers import wait_finished

MB = 1024 * 1024


def writes(mb: int) -> list[dict]:
    return [{"kind": "python", "code": f"import os\nopen('/outputs/data.bin', 'wb').write(os.urandom({mb} << 20))"}]


def owner_bytes(server, job_ids) -> int:
    data = server.root / "outputs"
    return disk_bytes(*[d / j for j in job_ids for d in (data / "uploaded_files", data / "results")])


def test_f9_an_owner_stores_at_most_their_quota(start_server):
    server = start_server(APP_MAX_STORAGE_MB_PER_OWNER=64)
    owner = server.client()
    accepted, answers = [], []
    for _ in range(4):
        resp = owner.submit(writes(40))
        answers.append(resp.status_code)
        if resp.status_code == 201:
            accepted.append(resp.json()["id"])
            wait_finished(owner, accepted[-1], timeout=180)
    stored = owner_bytes(server, accepted)
    big = owner.submit(writes(1), files={"big.csv": b"x" * (30 * MB)})
    figure("F9", f"4 jobs of 40 MB results each, quota 64 MB: answers {answers}, {stored / MB:.1f} MB stored; "
                 f"then a 30 MB upload: {big.status_code}")
    assert stored <= 64 * MB
    assert big.status_code == 507 and "64 MB" in big.json()["error"], big.text
    assert len(list((server.root / "outputs" / "uploaded_files").iterdir())) == len(accepted)  # nothing left behind


def test_f9_results_past_the_retention_period_are_removed(start_server):
    server = start_server(APP_RETENTION_DAYS=0.0001)   # 8.6 s
    owner = server.client()
    job = owner.submit(writes(20)).json()
    wait_finished(owner, job["id"], timeout=180)
    held = owner_bytes(server, [job["id"]])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and owner.get(f"/api/jobs/{job['id']}").status_code != 404:
        time.sleep(0.5)
    left = owner_bytes(server, [job["id"]])
    answer = owner.get(f"/api/jobs/{job['id']}").status_code
    figure("F9", f"retention 8.6 s: a finished job held {held / MB:.1f} MB; after at most 60 s "
                 f"{left / MB:.1f} MB, and the job answers {answer}")
    assert answer == 404
    assert left == 0 and held > 20 * MB
    assert "removed 1 job" in server.read_log()
