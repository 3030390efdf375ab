"""Benchmark: the offline playbook's analysis against the physical floor and ydata-profiling,
and its growth analysis of a kinetic plate read.

Growth: a BioTek Gen5-style kinetic read of a 96-well plate, 97 reads every 15 min
(tests/lab_files.kinetic_plate: known rates and lags, blanks in column 12, two wells that
never grow) is analysed end to end by analyze_table.py (read, clean, profile, blanks,
growth fits, findings, plots, files); the wall time (target under 3 s), the growth fit
alone, and the first lines of growth_parameters.csv are printed.

Generates lab-like CSVs of about 10 MB, 100 MB and 1 GB in a temporary folder
(deleted afterwards) and, for each, runs side by side as child processes:

  floor     DuckDB's bare `COPY (SELECT * FROM read_csv_auto(...)) TO ... (FORMAT PARQUET)`:
            reading the file and writing it once, with no cleaning, profile or plot;
  playbook  analyze_table.py: read, clean with an audit, profile every row (exact figures; distinct
            counts from HyperLogLog above 1,000,000 rows), findings, plots with matplotlib,
            cleaned CSV and Parquet;
  ydata     ydata-profiling in minimal mode on a pandas DataFrame of the file (10 and 100 MB).

Wall time and each child's peak RSS (from wait4) are reported; with --repeat N
(default 3 up to 100 MB, 1 above) the runs alternate floor, playbook, ydata, and
the median is shown, so a busy machine slows all of them alike. The ratio to
the floor is playbook / floor; the speed-up is ydata / playbook.

    python bench/bench_playbook.py [--sizes 10,100,1000] [--repeat N] [--no-ydata] [--ydata-python PATH]
                                   [--no-growth]

The playbook runs under this interpreter (the project's .venv). ydata-profiling
pins older pandas/numpy/matplotlib, so keep it out of the project's venv and
give it its own, then point --ydata-python (or env YDATA_PYTHON) at it:

    python3 -m venv /work/wt/ydata-venv && /work/wt/ydata-venv/bin/pip install ydata-profiling
    .venv/bin/python bench/bench_playbook.py --ydata-python /work/wt/ydata-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANALYZE = REPO / "agent_sandbox" / "playbook" / "scripts" / "analyze_table.py"
BYTES_PER_ROW = 70  # measured for the generator below

FLOOR = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute(f"COPY (SELECT * FROM read_csv_auto('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT PARQUET)")
"""

YDATA = """
import sys, pandas as pd
from ydata_profiling import ProfileReport
df = pd.read_csv(sys.argv[1])
ProfileReport(df, minimal=True, progress_bar=False).to_file(sys.argv[2])
"""


def generate(path: Path, megabytes: int) -> int:
    """A lab-like CSV: ids, timestamps, categories, measurements, missing markers, some identical rows."""
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


def run_measured(argv: list[str]) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MB of the child, exit code, CPU seconds of the child: user + system).

    The CPU time is the steadier figure on a shared machine: other engineers' load stretches the
    wall time of a long multi-phase run more than that of a short one."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  command failed ({code}): {err.strip()[-500:]}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code, usage.ru_utime + usage.ru_stime


def median_run(runs: list[tuple[float, float, int, float]]) -> tuple[float, float, bool, float]:
    return (statistics.median(r[0] for r in runs), max(r[1] for r in runs), all(r[2] == 0 for r in runs),
            statistics.median(r[3] for r in runs))


def growth_case(tmp: Path, repeat: int) -> None:
    """The growth analysis of a 96-well x 97-read plate, end to end, median of `repeat` runs."""
    sys.path.insert(0, str(REPO))
    from tests import lab_files

    plate = tmp / "kinetic_96x97.txt"
    truth = lab_files.kinetic_plate(plate)
    runs = []
    for _ in range(repeat):
        out = tmp / "out_growth"
        shutil.rmtree(out, ignore_errors=True)
        runs.append(run_measured([sys.executable, str(ANALYZE), str(plate), "--out", str(out)]))
    wall, rss, ok, cpu = median_run(runs)
    prof = json.loads((out / plate.stem / f"{plate.stem}.profile.json").read_text())
    g = prof["growth"]
    print(f"\ngrowth analysis of {len(g['wells'])} wells x {g['reads']} reads (analyze_table.py end to end, median of "
          f"{repeat}): {wall:.2f} s{'' if ok else ' (failed)'} (target under 3 s), CPU {cpu:.2f} s, peak RSS "
          f"{rss:,.0f} MB; the fit "
          f"itself {g['seconds']:.3f} s; {len(prof['plots'])} plots, {len(prof['findings'])} findings; runs: "
          + ", ".join(f"{r[0]:.2f} s" for r in runs))
    print(f"blanks {', '.join(g['blanks']['wells'])}: {g['blanks']['rule']}")
    errors = [abs(p["growth_rate_per_h"] / truth["rates"][p["well"]] - 1) for p in g["parameters"]
              if p["well"] in truth["rates"] and p["growth_rate_per_h"]]
    print(f"growth rates within {max(errors):.1%} of the truth (largest error over {len(errors)} wells)")
    lines = (out / plate.stem / "growth_parameters.csv").read_text().splitlines()
    print("\n".join(lines[:4] + ["..."] + [ln for ln in lines if ln.startswith(("C5,", "A12,"))]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="CSV sizes in MB")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case (default 3 up to 100 MB, 1 above)")
    parser.add_argument("--ydata-max-mb", type=int, default=100, help="largest size given to ydata-profiling")
    parser.add_argument("--no-ydata", action="store_true")
    parser.add_argument("--no-growth", action="store_true", help="skip the growth analysis of a 96-well plate")
    parser.add_argument("--ydata-python", default=os.environ.get("YDATA_PYTHON") or sys.executable,
                        help="interpreter that has ydata-profiling (default: env YDATA_PYTHON, else this one)")
    args = parser.parse_args()
    have_ydata = not args.no_ydata and subprocess.run(
        [args.ydata_python, "-c", "import ydata_profiling"], capture_output=True).returncode == 0
    if not have_ydata and not args.no_ydata:
        print(f"ydata-profiling cannot be imported by {args.ydata_python} (see --ydata-python): its column is left empty")

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_playbook_") as tmp:
        tmp = Path(tmp)
        if not args.no_growth:
            growth_case(tmp, args.repeat or 3)
        for mb in [int(s) for s in args.sizes.split(",") if s]:
            csv = tmp / f"data_{mb}mb.csv"
            t0 = time.perf_counter()
            rows = generate(csv, mb)
            size = csv.stat().st_size / 1024 / 1024
            print(f"generated {csv.name}: {size:.0f} MB, {rows:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)
            repeat = args.repeat or (3 if mb <= 100 else 1)
            floor, playbook, ydata = [], [], []
            for k in range(repeat):
                floor.append(run_measured([sys.executable, "-c", FLOOR, str(csv), str(tmp / "floor.parquet")]))
                out = tmp / f"out_{mb}"
                shutil.rmtree(out, ignore_errors=True)
                playbook.append(run_measured([sys.executable, str(ANALYZE), str(csv), "--out", str(out)]))
                if have_ydata and mb <= args.ydata_max_mb:
                    ydata.append(run_measured([args.ydata_python, "-c", YDATA, str(csv), str(tmp / f"y_{mb}.html")]))
                print(f"  run {k + 1}: floor {floor[-1][0]:.2f}s (CPU {floor[-1][3]:.2f}s), playbook "
                      f"{playbook[-1][0]:.2f}s (CPU {playbook[-1][3]:.2f}s)"
                      + (f", ydata {ydata[-1][0]:.1f}s" if ydata else ""), flush=True)
            prof = json.loads((out / csv.stem / f"{csv.stem}.profile.json").read_text())
            exact = ("all exact" if not prof["approximate"] else "exact but distinct counts (HyperLogLog)") \
                if prof["rows_after"] == rows else f"only {prof['rows_after']:,} rows"
            pairs = statistics.median(p[0] / f[0] for p, f in zip(playbook, floor))
            print(f"  playbook / floor per run: {', '.join(f'{p[0] / f[0]:.1f}x' for p, f in zip(playbook, floor))}"
                  f" (median {pairs:.1f}x)", flush=True)
            results.append((size, rows, median_run(floor), median_run(playbook),
                            median_run(ydata) if ydata else None, exact, len(prof["plots"]), len(prof["findings"])))
            shutil.rmtree(out, ignore_errors=True)
            csv.unlink()

    if not results:
        return 0
    print("\n| CSV | rows | floor (DuckDB COPY to Parquet) | playbook | playbook / floor | CPU playbook / floor "
          "| playbook peak RSS | ydata-profiling (minimal) | ydata peak RSS | ydata / playbook | statistics over every "
          "row | plots, findings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, rows, (f_wall, _, _, f_cpu), (p_wall, p_rss, ok, p_cpu), y, exact, plots, found in results:
        ycells = f"{y[0]:.1f} s | {y[1]:,.0f} MB | {y[0] / p_wall:.1f}x" if y else "not run | | "
        print(f"| {size:,.0f} MB | {rows:,} | {f_wall:.2f} s | {p_wall:.2f} s{'' if ok else ' (failed)'} | "
              f"{p_wall / f_wall:.1f}x | {p_cpu:.1f} s / {f_cpu:.1f} s = {p_cpu / f_cpu:.1f}x | {p_rss:,.0f} MB | "
              f"{ycells} | {exact} | "
              f"{plots}, {found} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
