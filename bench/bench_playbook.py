"""Benchmark: the offline playbook's analysis vs ydata-profiling (minimal mode).

Generates CSVs of about 10 MB, 100 MB and 1 GB in a temporary folder (deleted
afterwards), runs the playbook's analyze_table.py on each as a child process
and reports wall time and the child's peak RSS (from wait4). ydata-profiling
runs in minimal mode on the 10 MB and 100 MB files (its own child process, on
a pandas DataFrame of the file, which is how it is used). Prints a table.

    python bench/bench_playbook.py [--sizes 10,100,1000] [--no-ydata] [--ydata-python PATH]

The playbook runs under this interpreter (the project's .venv). ydata-profiling
pins older pandas/numpy/matplotlib, so keep it out of the project's venv and
give it its own, then point --ydata-python (or env YDATA_PYTHON) at it:

    python3 -m venv /tmp/ydata-venv && /tmp/ydata-venv/bin/pip install ydata-profiling duckdb
    .venv/bin/python bench/bench_playbook.py --sizes 10,100 --ydata-python /tmp/ydata-venv/bin/python

Without either, ydata runs under this interpreter if it can import it.

Each case runs once: the machine is shared, the figures are indicative.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANALYZE = REPO / "agent_sandbox" / "playbook" / "scripts" / "analyze_table.py"
BYTES_PER_ROW = 70  # measured for the generator below

YDATA = """
import sys, pandas as pd
from ydata_profiling import ProfileReport
df = pd.read_csv(sys.argv[1])
ProfileReport(df, minimal=True, progress_bar=False).to_file(sys.argv[2])
"""


def generate(path: Path, megabytes: int) -> int:
    """A lab-like CSV: ids, timestamps, categories, measurements, missing markers, some duplicates."""
    import duckdb

    rows = megabytes * 1024 * 1024 // BYTES_PER_ROW
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"""
        COPY (
          SELECT j AS sample_id,
                 TIMESTAMP '2026-01-01' + to_seconds(j * 7) AS read_time,
                 'site-' || ((j * 7919) % 12)::VARCHAR AS site,
                 CASE (j * 31) % 5 WHEN 0 THEN 'ctrl' WHEN 1 THEN 'low' WHEN 2 THEN 'mid' WHEN 3 THEN 'high' ELSE 'max' END AS dose,
                 round(((j * 2654435761) % 100000) / 1000.0, 3)::VARCHAR AS absorbance,
                 CASE WHEN j % 97 = 0 THEN 'NA' ELSE round(36.0 + ((j * 40503) % 2000) / 1000.0, 3)::VARCHAR END AS temperature,
                 ((j * 48271) % 5000)::VARCHAR AS counts,
                 CASE WHEN j % 13 = 0 THEN '' ELSE 'operator ' || ((j * 17) % 9)::VARCHAR END AS operator
          FROM (SELECT i % {rows - rows // 100} AS j FROM range({rows}) t(i))  -- the last 1% repeat earlier rows
        ) TO '{path}' (FORMAT CSV, HEADER)""")
    return rows


def run_measured(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB of the child, exit code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  command failed ({code}): {err.strip()[-500:]}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="CSV sizes in MB")
    parser.add_argument("--ydata-max-mb", type=int, default=100, help="largest size given to ydata-profiling")
    parser.add_argument("--no-ydata", action="store_true")
    parser.add_argument("--ydata-python", default=os.environ.get("YDATA_PYTHON") or sys.executable,
                        help="interpreter that has ydata-profiling (default: env YDATA_PYTHON, else this one)")
    args = parser.parse_args()
    have_ydata = not args.no_ydata and subprocess.run(
        [args.ydata_python, "-c", "import ydata_profiling"], capture_output=True).returncode == 0
    if not have_ydata and not args.no_ydata:
        print(f"ydata-profiling cannot be imported by {args.ydata_python} (see --ydata-python): its column is left empty")

    rows_out = []
    with tempfile.TemporaryDirectory(prefix="bench_playbook_") as tmp:
        tmp = Path(tmp)
        for mb in [int(s) for s in args.sizes.split(",")]:
            csv = tmp / f"data_{mb}mb.csv"
            t0 = time.perf_counter()
            rows = generate(csv, mb)
            size = csv.stat().st_size / 1024 / 1024
            print(f"generated {csv.name}: {size:.0f} MB, {rows:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)
            out = tmp / f"out_{mb}"
            wall, rss, code = run_measured([sys.executable, str(ANALYZE), str(csv), "--out", str(out)])
            print(f"  playbook: {wall:.1f}s, peak RSS {rss:.0f} MB, exit {code}", flush=True)
            y_wall = y_rss = None
            if have_ydata and mb <= args.ydata_max_mb:
                y_wall, y_rss, y_code = run_measured([args.ydata_python, "-c", YDATA, str(csv), str(tmp / f"y_{mb}.html")])
                print(f"  ydata-profiling minimal: {y_wall:.1f}s, peak RSS {y_rss:.0f} MB, exit {y_code}", flush=True)
            rows_out.append((size, rows, wall, rss, y_wall, y_rss))
            shutil.rmtree(out, ignore_errors=True)
            csv.unlink()

    print("\n| CSV | rows | playbook time | playbook peak RSS | ydata-profiling time | ydata peak RSS | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for size, rows, wall, rss, y_wall, y_rss in rows_out:
        y = (f"{y_wall:.1f} s | {y_rss:.0f} MB | {y_wall / wall:.1f}x" if y_wall else "not run | | ")
        print(f"| {size:.0f} MB | {rows:,} | {wall:.1f} s | {rss:.0f} MB | {y} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
