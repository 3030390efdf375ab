"""The agent benchmark: lab tasks whose results a script checks.

Each task gives the agent a small dataset and an instruction a scientist would
give, and checks the files it writes against numbers computed here from the
data. Per task it prints: solved or not (and why), the model's steps, tokens
(as the host's relay counted them) and wall time.

    # a real model (its key and endpoint from the environment, e.g. OPENAI_API_KEY)
    .venv/bin/python bench/agent_tasks.py --model openai:gpt-4o
    # a local OpenAI-compatible server (llama.cpp, vLLM, Ollama)
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 .venv/bin/python bench/agent_tasks.py --model openai:qwen2.5-coder
    # the harness alone: a scripted model server on 127.0.0.1 that writes each task's reference solution
    .venv/bin/python bench/agent_tasks.py --scripted [--sabotage] [--tasks blank_growth,ttest]

`--sabotage` makes the scripted model finish without doing anything: every
check must then fail (the checks can tell). Exit code 0 when every task is solved.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_sandbox import events as ev  # noqa: E402
from agent_sandbox.backends import get_backend  # noqa: E402
from agent_sandbox.relay.host import ModelAccess  # noqa: E402
from agent_sandbox.spec import Limits, RunSpec  # noqa: E402

Check = Callable[[Path], str]   # the results folder -> "" when solved, else what is wrong


@dataclass
class Task:
    name: str
    instructions: str
    files: dict[str, bytes]
    check: Check
    solution: str                # Python run in the sandbox (/outputs/scripts/solve.py) by the scripted model


# -- data -------------------------------------------------------------------------

def table(header: list[str], rows: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def close(got: float, want: float, rel: float) -> bool:
    return abs(got - want) <= rel * abs(want) + 1e-9


TIMES = [round(0.5 * i, 1) for i in range(25)]                  # hours
RATES = {"A1": 0.62, "A2": 0.48, "A3": 0.35, "A4": 0.71}       # per hour
BLANK = 0.045


def growth_plate() -> tuple[bytes, dict[str, float]]:
    rng = random.Random(1)
    rows = []
    for t in TIMES:
        od = {w: BLANK + min(0.005 * math.exp(r * t), 1.2) for w, r in RATES.items()}
        blanks = [BLANK + rng.uniform(-0.001, 0.001) for _ in range(2)]
        rows.append([t, *(round(od[w], 5) for w in RATES), *(round(b, 5) for b in blanks)])
    return table(["time_h", *RATES, "B1", "B2"], rows), RATES


def saturated_plate() -> tuple[bytes, set[str]]:
    wells = [f"{r}{c}" for r in "ABCD" for c in range(1, 4)]
    hot = {"A2", "C1", "D3"}
    rows = []
    for t in TIMES[:12]:
        rows.append([t, *(4.0 if w in hot and t >= 2 else round(0.05 + 0.1 * t, 3) for w in wells)])
    return table(["time_h", *wells], rows), hot


# -- checks -----------------------------------------------------------------------

def check_rates(results: Path) -> str:
    path = results / "growth_rates.csv"
    if not path.is_file():
        return "no growth_rates.csv"
    got = {r.get("well", ""): r.get("rate", "") for r in read_csv(path)}
    for well, rate in RATES.items():
        try:
            if not close(float(got[well]), rate, 0.05):
                return f"{well}: rate {got[well]}, expected {rate} (5%)"
        except (KeyError, ValueError):
            return f"{well}: no rate"
    return "" if not set(got) & {"B1", "B2"} else "the blank wells got a rate"


def check_lines(name: str, want: set[str]) -> Check:
    def check(results: Path) -> str:
        path = results / name
        if not path.is_file():
            return f"no {name}"
        got = {line.strip() for line in path.read_text().splitlines() if line.strip()}
        return "" if got == want else f"{name}: {sorted(got)}, expected {sorted(want)}"
    return check


def check_columns(name: str, key: str, column: str, want: dict[str, float], rel: float) -> Check:
    def check(results: Path) -> str:
        path = results / name
        if not path.is_file():
            return f"no {name}"
        got = {r.get(key, ""): r.get(column, "") for r in read_csv(path)}
        for k, value in want.items():
            try:
                if not close(float(got[k]), value, rel):
                    return f"{name}: {k} = {got[k]}, expected {value:.4g}"
            except (KeyError, ValueError):
                return f"{name}: no {column} for {k}"
        return ""
    return check


def check_json(name: str, want: dict[str, float], rel: float) -> Check:
    def check(results: Path) -> str:
        try:
            got = json.loads((results / name).read_text())
            wrong = [k for k, v in want.items() if not close(float(got[k]), v, rel)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"{name}: {type(exc).__name__}"
        return f"{name}: {', '.join(f'{k}={got[k]} (expected {want[k]:.4g})' for k in wrong)}" if wrong else ""
    return check


def check_log_plot(results: Path) -> str:
    png = results / "plot_B.png"
    if not png.is_file() or not png.read_bytes().startswith(b"\x89PNG") or png.stat().st_size < 2000:
        return "no plot_B.png (a real PNG)"
    scripts = " ".join(p.read_text(errors="replace") for p in (results / "scripts").glob("*.py")) \
        if (results / "scripts").is_dir() else ""
    if not any(word in scripts for word in ("set_yscale(\"log\")", "set_yscale('log')", "semilogy",
                                            "yscale(\"log\")", "yscale('log')", "logy=True")):
        return "no script in scripts/ sets a log axis"
    return ""


# -- the tasks ----------------------------------------------------------------------

def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t and its degrees of freedom (the p-value is checked from these, no scipy needed)."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se2 = va / len(a) + vb / len(b)
    df = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    return (ma - mb) / math.sqrt(se2), df


def t_two_sided_p(t: float, df: float, steps: int = 20000) -> float:
    """Two-sided p of Student's t, by Simpson's rule on its density."""
    pdf = lambda x: math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi) \
        * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    t, h = abs(t), abs(t) / steps
    area = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return max(0.0, 1 - 2 * area * h / 3)


GROUPS = {"control": [1.02, 0.97, 1.10, 0.95, 1.05, 0.99], "treated": [1.31, 1.22, 1.40, 1.18, 1.35, 1.27]}
T, DF = welch(GROUPS["treated"], GROUPS["control"])

SOLVE_RATES = '''
import math, pandas as pd
d = pd.read_csv("/workspace/plate.csv")
blank = d[["B1", "B2"]].mean(axis=1)
rows = []
for w in ["A1", "A2", "A3", "A4"]:
    od = d[w] - blank
    keep = (od > 0.02) & (od < 0.3)
    t, y = d["time_h"][keep], od[keep].map(math.log)
    tm, ym = t.mean(), y.mean()
    rows.append((w, ((t - tm) * (y - ym)).sum() / ((t - tm) ** 2).sum()))
pd.DataFrame(rows, columns=["well", "rate"]).to_csv("/outputs/growth_rates.csv", index=False)
'''

SOLVE_SATURATED = '''
import pandas as pd
d = pd.read_csv("/workspace/plate.csv").drop(columns="time_h")
open("/outputs/saturated.txt", "w").write("".join(w + "\\n" for w in d.columns if (d[w] >= 4.0).any()))
'''

SOLVE_MERGE = '''
import pandas as pd
s = pd.read_csv("/workspace/samples.csv"); m = pd.read_csv("/workspace/measurements.csv")
s["sample_id"] = s["sample_id"].str.strip().str.upper(); m["sample_id"] = m["sample_id"].str.strip().str.upper()
merged = s.merge(m, on="sample_id")
merged.to_csv("/outputs/merged.csv", index=False)
merged.groupby("condition")["value"].mean().reset_index(name="mean").to_csv("/outputs/condition_means.csv", index=False)
'''

SOLVE_TTEST = '''
import json, math, pandas as pd
d = pd.read_csv("/workspace/groups.csv")
a = d[d.group == "treated"].value.tolist(); b = d[d.group == "control"].value.tolist()
ma, mb = sum(a) / len(a), sum(b) / len(b)
va = sum((x - ma) ** 2 for x in a) / (len(a) - 1); vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
se2 = va / len(a) + vb / len(b)
df = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
t = (ma - mb) / math.sqrt(se2)
try:
    from scipy import stats
    p = float(stats.t.sf(abs(t), df) * 2)
except ImportError:
    pdf = lambda x: math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi) * (1 + x * x / df) ** (-(df + 1) / 2)
    n, h = 20000, abs(t) / 20000
    area = pdf(0) + pdf(abs(t)) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    p = 1 - 2 * area * h / 3
json.dump({"t": t, "p": p, "df": df}, open("/outputs/ttest.json", "w"))
'''

SOLVE_LOG_PLOT = '''
import pandas as pd, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d = pd.read_csv("/workspace/growth.csv")
b = d[d.strain == "B"]
fig, ax = plt.subplots()
ax.plot(b.time_h, b.od, "o-")
ax.set_yscale("log")
ax.set_xlabel("time (h)"); ax.set_ylabel("OD600")
fig.savefig("/outputs/plot_B.png", dpi=100)
'''

SOLVE_DOUBLING = '''
import math, pandas as pd
d = pd.read_csv("/workspace/curve.csv")
e = d[(d.od > 0.02) & (d.od < 0.3)]
t, y = e.time_h, e.od.map(math.log)
rate = ((t - t.mean()) * (y - y.mean())).sum() / ((t - t.mean()) ** 2).sum()
open("/outputs/doubling_time.txt", "w").write(f"{math.log(2) / rate:.4f}\\n")
'''

SOLVE_OUTLIERS = '''
import pandas as pd
d = pd.read_csv("/workspace/replicates.csv")
out = []
for _, g in d.groupby("group"):
    med = g.value.median(); mad = (g.value - med).abs().median()
    out += g[(g.value - med).abs() > 5 * mad].sample_id.tolist()
open("/outputs/outliers.txt", "w").write("".join(s + "\\n" for s in out))
'''

SOLVE_UNITS = '''
import pandas as pd
c = pd.read_csv("/workspace/concentrations.csv"); w = pd.read_csv("/workspace/molecular_weights.csv")
m = c.merge(w, on="compound")
m["conc_uM"] = m.conc_mg_per_L / m.mw_g_per_mol * 1000
m[["compound", "conc_uM"]].to_csv("/outputs/converted.csv", index=False)
'''

SOLVE_IC50 = '''
import math, pandas as pd
d = pd.read_csv("/workspace/dose_response.csv").sort_values("dose_uM")
half = d.response.max() / 2
for (x0, y0), (x1, y1) in zip(d[["dose_uM", "response"]].values, d[["dose_uM", "response"]].values[1:]):
    if (y0 - half) * (y1 - half) <= 0:
        lx = math.log10(x0) + (half - y0) * (math.log10(x1) - math.log10(x0)) / (y1 - y0)
        open("/outputs/ic50.txt", "w").write(f"{10 ** lx:.4f}\\n"); break
'''

SOLVE_SUMMARY = '''
import pandas as pd
d = pd.read_excel("/workspace/plate.xlsx", sheet_name=None)
raw, layout = d["raw"], d["layout"]
last = raw[raw.time_h == raw.time_h.max()].drop(columns="time_h").T.reset_index()
last.columns = ["well", "od"]
m = last.merge(layout, on="well")
s = m.groupby("strain").od.agg(["mean", "std"]).reset_index().rename(columns={"std": "sd"})
s.to_csv("/outputs/summary.csv", index=False)
'''

SOLVE_MISSING = '''
import json, pandas as pd
d = pd.read_csv("/workspace/survey.csv", na_values=["NA", "", "n/a"])
json.dump({k: int(v) for k, v in d.isna().sum().items()}, open("/outputs/missing.json", "w"))
'''


def tasks() -> list[Task]:
    plate, _ = growth_plate()
    saturated, hot = saturated_plate()
    growth = table(["time_h", "strain", "od"], [[t, s, round(0.01 * math.exp(r * t), 5)]
                                               for t in TIMES for s, r in (("A", 0.3), ("B", 0.55))])
    curve = table(["time_h", "od"], [[t, round(min(0.004 * math.exp(0.45 * t), 1.1), 5)] for t in TIMES])
    samples = table(["sample_id", "condition"], [[f" s{i:02d}" if i % 3 == 0 else f"S{i:02d}", "heat" if i % 2 else "ctrl"]
                                                 for i in range(1, 13)])
    values = {f"S{i:02d}": round(1 + 0.25 * i + (0.8 if i % 2 else 0), 3) for i in range(1, 13)}
    measurements = table(["sample_id", "value"], [[k.lower() if i % 4 == 0 else k, v]
                                                  for i, (k, v) in enumerate(values.items())])
    means = {c: sum(v for k, v in values.items() if (int(k[1:]) % 2 == 1) == (c == "heat"))
             / 6 for c in ("heat", "ctrl")}
    reps = [[f"R{g}{i}", g, round(10 * (g == "b") + 5 + 0.1 * ((i * 7) % 5) + (9 if (g, i) in {("a", 3), ("b", 6)} else 0), 2)]
            for g in "ab" for i in range(1, 9)]
    compounds = {"caffeine": (194.19, 50.0), "glucose": (180.16, 900.0), "ampicillin": (349.41, 100.0)}
    doses = [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100]
    ic50 = 2.0
    response = [[d, round(100 / (1 + (d / ic50) ** 1.0), 3)] for d in doses]
    survey = b"id,age,weight,site\n1,34,70,x\n2,NA,,y\n3,29,n/a,\n4,,80,x\n5,41,75,NA\n"
    return [
        Task("blank_growth", "Subtract the mean of the blank wells B1 and B2 at each time point, then fit the "
             "exponential growth rate (per hour) of each other well over its exponential phase (blanked OD "
             "between 0.02 and 0.3). Write growth_rates.csv with columns well,rate.",
             {"plate.csv": plate}, check_rates, SOLVE_RATES),
        Task("saturated_wells", "Find the wells whose readings reach the plate reader's maximum of 4.0 "
             "(saturated). Write saturated.txt with one well name per line.",
             {"plate.csv": saturated}, check_lines("saturated.txt", hot), SOLVE_SATURATED),
        Task("merge_samples", "Merge samples.csv and measurements.csv on the sample ID (the IDs differ in case "
             "and spaces), write merged.csv, and the mean value per condition to condition_means.csv with "
             "columns condition,mean.", {"samples.csv": samples, "measurements.csv": measurements},
             check_columns("condition_means.csv", "condition", "mean", means, 0.001), SOLVE_MERGE),
        Task("ttest", "Compare the treated and control groups with Welch's t-test (treated minus control). "
             "Write ttest.json with keys t, df and p (two-sided).",
             {"groups.csv": table(["group", "value"], [[g, v] for g, vs in GROUPS.items() for v in vs])},
             check_json("ttest.json", {"t": T, "df": DF, "p": t_two_sided_p(T, DF)}, 0.02), SOLVE_TTEST),
        Task("log_plot", "Plot strain B's OD over time on a logarithmic y axis and save it as plot_B.png; keep "
             "the script that made it in scripts/.", {"growth.csv": growth}, check_log_plot, SOLVE_LOG_PLOT),
        Task("doubling_time", "Estimate the doubling time in hours from the exponential phase (OD between 0.02 "
             "and 0.3) of this growth curve. Write just the number to doubling_time.txt.",
             {"curve.csv": curve}, check_number("doubling_time.txt", math.log(2) / 0.45, 0.03), SOLVE_DOUBLING),
        Task("outliers", "Each group (a, b) has replicate measurements; find the outlying replicates (far from "
             "the rest of their group) and write their sample_id to outliers.txt, one per line.",
             {"replicates.csv": table(["sample_id", "group", "value"], reps)},
             check_lines("outliers.txt", {"Ra3", "Rb6"}), SOLVE_OUTLIERS),
        Task("unit_conversion", "Convert each compound's concentration from mg/L to µM using the molecular "
             "weights file. Write converted.csv with columns compound,conc_uM.",
             {"concentrations.csv": table(["compound", "conc_mg_per_L"], [[k, c] for k, (_, c) in compounds.items()]),
              "molecular_weights.csv": table(["compound", "mw_g_per_mol"], [[k, m] for k, (m, _) in compounds.items()])},
             check_columns("converted.csv", "compound", "conc_um",
                           {k: c / m * 1000 for k, (m, c) in compounds.items()}, 0.001), SOLVE_UNITS),
        Task("ic50", "Estimate the IC50 (µM): the dose where the response is half of its maximum, by linear "
             "interpolation on log10(dose) between the two doses around it. Write the number to ic50.txt.",
             {"dose_response.csv": table(["dose_uM", "response"], response)},
             check_number("ic50.txt", ic50_reference(response), 0.02), SOLVE_IC50),
        Task("workbook_summary", "The workbook has the readings (sheet raw) and the plate layout (sheet layout: "
             "well, strain). At the last time point, give the mean and the standard deviation of the OD per "
             "strain in summary.csv with columns strain,mean,sd.", {"plate.xlsx": workbook()},
             check_columns("summary.csv", "strain", "mean", {"wt": 0.85, "mutant": 0.45}, 0.001), SOLVE_SUMMARY),
        Task("missing_values", "Count the missing values in each column of survey.csv (empty, NA or n/a). "
             "Write missing.json mapping each column name to its count.", {"survey.csv": survey},
             check_json("missing.json", {"id": 0, "age": 2, "weight": 2, "site": 2}, 0.0), SOLVE_MISSING),
    ]


def check_number(name: str, want: float, rel: float) -> Check:
    def check(results: Path) -> str:
        try:
            got = float((results / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return f"no number in {name}"
        return "" if close(got, want, rel) else f"{name}: {got}, expected {want:.4g}"
    return check


def ic50_reference(points: list[list[float]]) -> float:
    half = max(r for _, r in points) / 2
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if (y0 - half) * (y1 - half) <= 0:
            return 10 ** (math.log10(x0) + (half - y0) * (math.log10(x1) - math.log10(x0)) / (y1 - y0))
    raise ValueError("no crossing")


def workbook() -> bytes:
    import openpyxl
    book = openpyxl.Workbook()
    raw = book.active
    raw.title = "raw"
    raw.append(["time_h", "A1", "A2", "B1", "B2"])
    raw.append([0, 0.05, 0.05, 0.05, 0.05])
    raw.append([8, 0.80, 0.90, 0.40, 0.50])
    layout = book.create_sheet("layout")
    for row in (["well", "strain"], ["A1", "wt"], ["A2", "wt"], ["B1", "mutant"], ["B2", "mutant"]):
        layout.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# -- running ------------------------------------------------------------------------

def scripted_turns(task: Task, sabotage: bool) -> list[dict]:
    from tests.fake_llm import call, finish
    if sabotage:
        return [finish("Nothing done.")]
    return [call("write_file", text="Write the analysis as a script.", path="scripts/solve.py", content=task.solution),
            call("shell", command="python /outputs/scripts/solve.py"), finish(f"Solved {task.name}.")]


def run_task(task: Task, model: str, backend: str, access: ModelAccess | None, limits: Limits) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"agent-bench-{task.name}-"))
    workspace = root / "workspace"
    workspace.mkdir()
    for name, data in task.files.items():
        (workspace / name).write_bytes(data)
    spec = RunSpec(job_id=uuid.uuid4().hex[:16], workspace=workspace, results=root / "results",
                   instructions=task.instructions, model=model, limits=limits, model_access=access)
    finished: list[dict] = []
    started = time.monotonic()
    result = get_backend(backend).run(spec, lambda e: finished.append(e) if e["type"] == ev.RUN_FINISHED else None)
    wall = time.monotonic() - started
    problem = task.check(spec.results) if result.manifest.get("files") is not None else "no results"
    return {"task": task.name, "solved": not problem, "why": problem or "", "status": str(result.status),
            "reason": result.reason,
            "steps": (finished[-1]["data"].get("steps") if finished else 0),
            "tokens": result.usage.get("total_tokens", 0), "wall": round(wall, 1), "folder": str(root)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="", help="e.g. openai:gpt-4o, anthropic:claude-sonnet-4-5")
    p.add_argument("--scripted", action="store_true", help="a scripted model server on 127.0.0.1 (the harness)")
    p.add_argument("--sabotage", action="store_true", help="with --scripted: the model does nothing")
    p.add_argument("--backend", default="local")
    p.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--max-tokens", type=int, default=300_000)
    p.add_argument("--json", action="store_true", help="one JSON object per task")
    args = p.parse_args(argv)
    if not args.scripted and not args.model:
        p.error("name a --model, or --scripted for the harness alone")
    chosen = [t for t in tasks() if not args.tasks or t.name in args.tasks.split(",")]
    limits = Limits.from_env(max_steps=args.max_steps, max_tokens=args.max_tokens, run_timeout=900.0)
    rows = []
    print(f"{'task':18} {'solved':7} {'steps':>5} {'tokens':>8} {'wall s':>7}  note", flush=True)
    for task in chosen:
        if args.scripted:
            from tests.fake_llm import FakeLLM
            with FakeLLM("openai", scripted_turns(task, args.sabotage), metered=True) as fake:
                row = run_task(task, "openai:scripted", args.backend,
                               ModelAccess("openai", "scripted", fake.base_url, ""), limits)
        else:   # the key and the endpoint from this process's environment, as the CLI takes them
            row = run_task(task, args.model, args.backend, None, limits)
        rows.append(row)
        print(json.dumps(row) if args.json else
              f"{row['task']:18} {'yes' if row['solved'] else 'no':7} {row['steps']:>5} {row['tokens']:>8,} "
              f"{row['wall']:>7}  {row['why'] or row['status']}{(' (' + row['reason'][:120] + ')') if row['reason'] else ''}", flush=True)
    solved = sum(r["solved"] for r in rows)
    print(f"solved {solved} of {len(rows)}; tokens {sum(r['tokens'] for r in rows):,}; "
          f"wall {sum(r['wall'] for r in rows):.1f}s", flush=True)
    return 0 if solved == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
