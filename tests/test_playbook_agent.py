"""The offline playbook through the real agent loop (no sandbox) and through the
host CLI in the local bubblewrap sandbox, as a user runs it."""

from __future__ import annotations

import csv
import importlib.resources
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent_sandbox.events import parse_line
from agent_sandbox.models import FINISH, SHELL, WRITE_FILE, Observation, Task, Turn
from agent_sandbox.models.offline import OfflinePlaybook, plan, table_base_names
from agent_sandbox.playbook import SCRIPT_NAMES
from tests.conftest import REPO

PENGUINS_RAW = Path(str(importlib.resources.files("palmerpenguins") / "data" / "penguins-raw.csv"))


def run_agent(workspace: Path, outputs: Path, *extra: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox.coding_agent", "--workspace", str(workspace),
                           "--outputs", str(outputs), "--model", "offline", *extra],
                          capture_output=True, text=True, timeout=240, cwd=REPO)
    events = [parse_line(line) for line in proc.stdout.splitlines()]
    assert events and events[-1]["type"] == "run_finished", proc.stderr
    assert proc.returncode == (0 if events[-1]["data"]["status"] == "succeeded" else 1)
    return events


def of_type(events: list[dict], type_: str) -> list[dict]:
    return [e for e in events if e["type"] == type_]


def test_agent_loop_processes_every_file_and_survives_a_failure(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(PENGUINS_RAW, ws / "penguins-raw.csv")
    shutil.copy(REPO / "my_files" / "README.md", ws / "README.md")
    shutil.copy(REPO / "my_files" / "units.csv", ws / "units.csv")
    (ws / "broken.parquet").write_bytes(b"not parquet\n")
    out = tmp_path / "out"
    events = run_agent(ws, out)
    assert events[-1]["data"]["status"] == "succeeded"

    written = [e["data"]["path"] for e in of_type(events, "file_written")]
    assert written == [f"scripts/{s}" for s in SCRIPT_NAMES]
    commands = [e["data"]["command"] for e in of_type(events, "command_started") if e["data"]["kind"] == "shell"]
    assert sum("analyze_table.py" in c for c in commands) == 4 and "make_report.py" in commands[-1]
    steps = [e["data"]["text"] for e in of_type(events, "step")]
    assert any(s.startswith("Warning: the analysis of broken.parquet failed") for s in steps)
    message = of_type(events, "message")[-1]["data"]["text"]
    assert "Analysed 2 of 4 file(s) into 2 table(s)" in message
    assert "README.md (Markdown text, not a table)" in message and "broken.parquet" in message

    with open(PENGUINS_RAW, encoding="utf-8") as f:
        n_rows = sum(1 for _ in csv.DictReader(f))
    assert f"penguins_raw: {n_rows} -> {n_rows} rows" in message
    for path in ["report.md", "report.html", "penguins_raw/penguins_raw.csv", "penguins_raw/penguins_raw.parquet",
                 "penguins_raw/penguins_raw.profile.json", "units/units.csv", *[f"scripts/{s}" for s in SCRIPT_NAMES]]:
        assert (out / path).is_file(), path
    assert list((out / "penguins_raw" / "plots").glob("penguins_raw_*.png"))
    report = (out / "report.md").read_text()
    assert "broken.parquet: FAILED" in report and "README.md: skipped" in report
    assert not (out / ".scratch").exists()

    # the scripts in the results reproduce the analysis without the agent
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(out / "scripts" / "analyze_table.py"), str(ws / "penguins-raw.csv"),
                    "--out", str(again), "--name", "penguins_raw"], check=True, capture_output=True, timeout=120)
    first = json.loads((out / "penguins_raw" / "penguins_raw.profile.json").read_text())
    second = json.loads((again / "penguins_raw" / "penguins_raw.profile.json").read_text())
    assert first["columns"] == second["columns"] and first["audit"] == second["audit"]
    # and rerunning it inside the results replaces that file's tables rather than adding copies
    before = sorted(p.name for p in out.iterdir())
    subprocess.run([sys.executable, str(out / "scripts" / "analyze_table.py"), str(ws / "penguins-raw.csv"),
                    "--out", str(out), "--name", "penguins_raw"], check=True, capture_output=True, timeout=120)
    assert sorted(p.name for p in out.iterdir()) == before


def test_nothing_to_analyse_fails(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.md").write_text("# only notes\n")
    events = run_agent(ws, tmp_path / "out")
    assert events[-1]["data"]["status"] == "failed"
    assert "Analysed 0 of 1 file(s)" in of_type(events, "message")[-1]["data"]["text"]
    assert (tmp_path / "out" / "report.md").is_file()


def test_plan_fits_the_step_budget_and_names_are_unique(tmp_path):
    files = [{"path": f"d{i % 3}/data.csv", "size": i} for i in range(3)]
    files += [{"path": f"f{i}.csv", "size": 10 + i} for i in range(60)]
    task = Task(instructions="", workspace="/workspace", outputs="/outputs", files=files)
    for max_steps in (40, 15):
        task.max_steps = max_steps
        steps = plan(task)
        assert len(steps) + 1 <= max_steps
        analysed = [f["path"] for s in steps if s.kind == "analyze" for f in s.files]
        assert sorted(analysed) == sorted(f["path"] for f in files)
    big = Task(instructions="", workspace="/w", outputs="/o",
               files=[{"path": "huge.csv", "size": 300 * 1024 * 1024}, {"path": "small.csv", "size": 10}])
    kinds = [(s.kind, s.preliminary, [f["path"] for f in s.files]) for s in plan(big) if s.kind != "write"]
    assert kinds == [("analyze", False, ["small.csv"]), ("report", True, []), ("analyze", False, ["huge.csv"]),
                     ("report", False, [])]
    names = table_base_names(["a/data.csv", "b/data.csv", "data.json", "data.csv"])
    assert len(set(names.values())) == 4 and names["a/data.csv"] == "data"


def test_model_reacts_to_a_crash_without_result_line():
    task = Task(instructions="", workspace="/ws", outputs="/out",
                files=[{"path": "a.csv", "size": 5}, {"path": "b.csv", "size": 9}])
    model = OfflinePlaybook()
    history: list[Turn] = []
    action = model.next_action(task, history)
    while action.kind == WRITE_FILE:
        history.append(Turn(action, Observation(exit_code=0, output="wrote")))
        action = model.next_action(task, history)
    assert action.kind == SHELL and "/ws/a.csv" in action.command
    history.append(Turn(action, Observation(exit_code=137, output="Killed")))
    action = model.next_action(task, history)
    assert action.thought.startswith("Warning: the analysis of a.csv failed (exit code 137: Killed)")
    assert "/ws/b.csv" in action.command
    ok = {"file": "b.csv", "status": "ok", "tables": ["b"], "reason": ""}
    history.append(Turn(action, Observation(exit_code=0, output="RESULT " + json.dumps(ok))))
    action = model.next_action(task, history)
    assert "make_report.py" in action.command and "--failed a.csv 'exit code 137: Killed'" in action.command
    history.append(Turn(action, Observation(exit_code=0, output='RESULT {"tables": []}')))
    action = model.next_action(task, history)
    assert action.kind == FINISH and action.status == "succeeded" and "a.csv (exit code 137" in action.message


def test_a_failed_script_write_stops_the_run():
    task = Task(instructions="", workspace="/ws", outputs="/out", files=[{"path": "a.csv", "size": 5}])
    model = OfflinePlaybook()
    first = model.next_action(task, [])
    action = model.next_action(task, [Turn(first, Observation(exit_code=1, output="could not write: disk full"))])
    assert action.kind == FINISH and action.status == "failed" and "disk full" in action.message


def test_cli_in_local_sandbox_on_penguins(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--output", str(out), str(PENGUINS_RAW)],
                          capture_output=True, text=True, timeout=240, cwd=REPO, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "$ python /outputs/scripts/analyze_table.py /workspace/penguins-raw.csv" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"report.md", "report.html", "penguins_raw/penguins_raw.csv", "penguins_raw/penguins_raw.parquet",
            "penguins_raw/penguins_raw.profile.json", "scripts/analyze_table.py"} <= paths
    assert any(p.startswith("penguins_raw/plots/") and p.endswith(".png") for p in paths)
    with open(PENGUINS_RAW, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    report = (out / "report.md").read_text()
    assert f"| penguins_raw | penguins-raw.csv | {len(rows) - 1} | {len(rows) - 1} | {len(rows[0])} | {len(rows[0])} |" in report
