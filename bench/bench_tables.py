"""The table explorer on a 1.2 M-row table (issue 23; target: under 300 ms per view): a real
server, a real job that writes the cleaned Parquet table in its sandbox, then each kind of view
asked for through HTTP as JSON (`GET /api/jobs/<id>/tables/<table>?...`) and as the explorer's
page, `--runs` times each (the first run of each is counted too: nothing is cached between
views). Prints the median and the slowest per view, and checks that sorting by voltage
descending gives the true maximum first.

    .venv/bin/python bench/bench_tables.py [--rows 1200000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "web"))
from big_table import ROWS, TABLE, TRUE_MAX, write_action  # noqa: E402
from web_helpers import Server, wait_finished  # noqa: E402

VIEWS = {
    "first page": {},
    "sort by voltage, largest first": {"sort": "-voltage_mv"},
    "sort by a text column": {"sort": "cell"},
    "filter contains + sort": {"cell__contains": "42", "sort": "current_pa"},
    "range filter + sort": {"voltage_mv__gte": "-60", "voltage_mv__lte": "-58", "sort": "-time_s"},
    "missing values": {"current_pa__isnull": "1"},
    "equals + 3 columns": {"condition__exact": "drug_b", "columns": "id,condition,voltage_mv"},
    "last page (offset 1.19 M)": {"offset": str(ROWS - 50)},
    "500 rows per page, sorted": {"sort": "-current_pa", "limit": "500"},
}


def timed(client, path: str, params: dict) -> tuple[float, object]:
    start = time.perf_counter()
    resp = client.get(path, params=params, timeout=120)
    took = time.perf_counter() - start
    assert resp.status_code == 200, (path, params, resp.text[:300])
    return took, resp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), {}).start()
        try:
            client = server.client()
            start = time.perf_counter()
            job = client.submit([write_action(args.rows)]).json()
            assert wait_finished(client, job["id"], timeout=300)["status"] == "succeeded"
            print(f"{args.rows:,}-row table written by a job in {time.perf_counter() - start:.1f} s "
                  f"(submit to succeeded)")
            api, page = f"/api/jobs/{job['id']}/tables/{TABLE}", f"/jobs/{job['id']}/tables/{TABLE}"
            first = client.get(api, params={"sort": "-voltage_mv", "limit": 1}).json()
            assert first["total"] == args.rows
            assert args.rows < 777_778 or first["rows"][0][3] == TRUE_MAX, first["rows"][0]
            print(f"sorted by voltage, largest first: {first['rows'][0][3]} mV (the true maximum: {TRUE_MAX})\n")
            print(f"{'view':34} {'JSON median':>12} {'JSON max':>9} {'page median':>12} {'page max':>9}")
            worst = 0.0
            for name, params in VIEWS.items():
                json_times = [timed(client, api, params)[0] for _ in range(args.runs)]
                page_times = [timed(client, page, params)[0] for _ in range(args.runs)]
                worst = max(worst, *json_times, *page_times)
                print(f"{name:34} {statistics.median(json_times) * 1000:10.0f} ms {max(json_times) * 1000:6.0f} ms "
                      f"{statistics.median(page_times) * 1000:10.0f} ms {max(page_times) * 1000:6.0f} ms")
            took, resp = timed(client, api, {"condition__exact": "wash", "sort": "-voltage_mv", "format": "csv"})
            print(f"\nCSV of a filtered, sorted view ({len(resp.content) / 1e6:.1f} MB, "
                  f"{resp.text.count(chr(10)) - 1:,} rows): {took * 1000:.0f} ms")
            print(f"slowest view of all: {worst * 1000:.0f} ms (target: under 300 ms)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
