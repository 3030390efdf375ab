"""The offline playbook through the real agent loop (no sandbox) and through the
host CLI in the local bubblewrap sandbox, as a user runs it."""

from __future__ import annotations

import csv
import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

from agent_sandbox.agent.models import FINISH, SHELL, WRITE_FILE, Action, Observation, Task, Turn
from agent_sandbox.agent.models.offline import OfflinePlaybook, min_steps, plan, table_base_names
from agent_sandbox.agent.playbook import SCRIPT_NAMES
from agent_sandbox.events import parse_line
from agent_sandbox.workspace import prepare_workspace
from tests import lab_files
from tests.conftest import REPO

PENGUINS_RAW = Path(str(importlib.resources.files("palmerpenguins") / "data" / "penguins-raw.csv"))


def run_agent(workspace: Path, outputs: Path, *extra: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox.agent", "--workspace", str(workspace),
                           "--outputs", str(outputs), "--model", "offline", *extra],
                          capture_output=True, text=True, timeout=240, cwd=REPO)
    events = [parse_line(line) for line in proc.stdout.splitlines()]
    assert events and events[-1]["type"] == "run_finished", proc.stderr
    assert proc.returncode == (0 if events[-1]["data"]["status"] == "succeeded" else 1)
    return events


def of_type(events: list[dict], type_: str) -> list[dict]:
    return [e for e in events if e["type"] == type_]


def test_agent_loop_processes_every_upload_and_survives_a_failure(tmp_path):
    # a workspace as the web app prepares it: the uploads, then my_files copied in beside them
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet\n")
    notes = tmp_path / "notes.md"
    notes.write_text("# what we did\n")
    ws = prepare_workspace(tmp_path / "root", "job1", [PENGUINS_RAW, broken, notes], REPO / "my_files")
    out = tmp_path / "out"
    events = run_agent(ws, out)
    assert events[-1]["data"]["status"] == "succeeded"

    written = [e["data"]["path"] for e in of_type(events, "file_written")]
    assert written == [f"scripts/{s}" for s in SCRIPT_NAMES]
    commands = [e["data"]["command"] for e in of_type(events, "command_started") if e["data"]["kind"] == "shell"]
    analysed = [c for c in commands if "analyze_table.py" in c]
    # the uploads are analysed; my_files (README.md, units.csv) only offered as references
    assert len(analysed) == 3 and not any(f"{ws}/units.csv --out" in c or f"{ws}/README.md --out" in c for c in analysed)
    assert all(f"--reference {ws}/units.csv" in c for c in analysed)
    assert "make_report.py" in commands[-1] and "--reference units.csv" in commands[-1]
    steps = [e["data"]["text"] for e in of_type(events, "step")]
    assert any(s.startswith("Warning: the analysis of broken.parquet failed") for s in steps)
    assert "Reference files from my_files, used where they apply but not analysed: README.md, units.csv" in steps[0]
    message = of_type(events, "message")[-1]["data"]["text"]
    assert "Analysed 1 of 3 uploaded file(s) into 1 table(s)" in message
    assert "notes.md (Markdown text, not a table)" in message and "broken.parquet" in message
    assert "2 reference file(s) from my_files listed, not analysed" in message

    with open(PENGUINS_RAW, encoding="utf-8") as f:
        n_rows = sum(1 for _ in csv.DictReader(f))
    assert f"penguins_raw: {n_rows} -> {n_rows} rows" in message
    for path in ["report.md", "report.html", "penguins_raw/penguins_raw.csv", "penguins_raw/penguins_raw.parquet",
                 "penguins_raw/penguins_raw.profile.json", "scripts/plot_penguins_raw.py",
                 *[f"scripts/{s}" for s in SCRIPT_NAMES]]:
        assert (out / path).is_file(), path
    assert not (out / "units").exists() and not (out / "inputs" / "units.json").exists()
    assert list((out / "penguins_raw" / "plots").glob("penguins_raw_*.png"))
    report = (out / "report.md").read_text()
    assert "broken.parquet: FAILED" in report and "notes.md: skipped" in report
    assert "## Reference material" in report and "- units.csv: reference only, not analysed as data" in report
    assert report.index("## Findings") < report.index("## Tables") and "- [Findings](#findings)" in report
    assert not (out / ".scratch").exists()

    # the scripts in the results reproduce the analysis without the agent
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(out / "scripts" / "analyze_table.py"), str(ws / "penguins-raw.csv"),
                    "--out", str(again), "--name", "penguins_raw"], check=True, capture_output=True, timeout=120)
    first = json.loads((out / "penguins_raw" / "penguins_raw.profile.json").read_text())
    second = json.loads((again / "penguins_raw" / "penguins_raw.profile.json").read_text())
    assert first["columns"] == second["columns"] and first["audit"] == second["audit"]
    assert first["findings"] == second["findings"] and first["plots"] == second["plots"]
    # and the plot script redraws the plots from the cleaned Parquet, as a scientist would after editing it
    for plot in first["plots"]:
        (out / plot["path"]).unlink()
    subprocess.run([sys.executable, str(out / "scripts" / "plot_penguins_raw.py")], check=True, capture_output=True,
                   timeout=120)
    assert all((out / plot["path"]).stat().st_size > 1000 for plot in first["plots"])
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
    assert events[-1]["data"]["reason"] == ("No table could be read from the uploaded files: "
                                            "notes.md (Markdown text, not a table).")
    assert (tmp_path / "out" / "report.md").is_file()


def test_uploads_without_a_table_fail_even_with_my_files(tmp_path):
    """An image and an empty file yield no table; my_files/units.csv must not make the job succeed."""
    photo, empty = tmp_path / "photo.png", tmp_path / "empty.csv"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    empty.write_bytes(b"")
    ws = prepare_workspace(tmp_path / "root", "job2", [photo, empty], REPO / "my_files")
    assert (ws / "units.csv").is_file()
    events = run_agent(ws, tmp_path / "out")
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["reason"] == ("No table could be read from the uploaded files: "
                                            "empty.csv (the file is empty); photo.png (an image, not a table).")
    assert not (tmp_path / "out" / "units").exists()
    # only reference files and no upload: failed too, saying so
    only = prepare_workspace(tmp_path / "root", "job3", [], REPO / "my_files")
    events = run_agent(only, tmp_path / "out3")
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["reason"].startswith("No uploaded file to analyse: the workspace holds only reference "
                                                   "files from my_files (README.md, units.csv)")


def test_plate_map_from_my_files_joins_the_plate(tmp_path):
    """A lab's plate map in my_files names each well's sample: it joins the plate grid, blanks are
    checked by that name, and the map is listed as reference material, not analysed."""
    plate = tmp_path / "plate.txt"
    truth = lab_files.tecan_endpoint(plate, over=(), decimal_comma=False)
    my_files = tmp_path / "my_files"
    my_files.mkdir()
    layout = {w: ("Blank" if w.endswith("12") else f"S{(int(w[1:]) - 1) // 3 + 1}{w[0]}") for w in truth["values"]}
    lab_files.plate_map_csv(my_files / "plate_map.csv", layout)
    ws = prepare_workspace(tmp_path / "root", "job4", [plate], my_files)
    out = tmp_path / "out"
    events = run_agent(ws, out)
    assert events[-1]["data"]["status"] == "succeeded"
    prof = json.loads((out / "plate" / "plate.profile.json").read_text())
    assert [c["name"] for c in prof["columns"]][:5] == ["well", "row", "column", "absorbance", "sample"]
    with open(out / "plate" / "plate.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["well"]: r["sample"] for r in rows} == layout
    assert any(a["action"] == "plate map joined" and "plate_map.csv" in a["detail"] for a in prof["audit"])
    report = (out / "report.md").read_text()
    assert "- plate_map.csv: plate map joined to plate" in report
    assert not (out / "plate_map").exists()


def test_instruction_to_remove_duplicates_is_followed(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    lines = ["sample,od"] + [f"s{i},{i / 10}" for i in range(10)] + ["s3,0.3", "s3,0.3"]
    (ws / "runs.csv").write_text("\n".join(lines) + "\n")
    events = run_agent(ws, tmp_path / "out", "--instructions", "Please remove duplicate rows before profiling.")
    assert events[-1]["data"]["status"] == "succeeded"
    assert any("--drop-duplicates" in e["data"]["command"] for e in of_type(events, "command_started"))
    prof = json.loads((tmp_path / "out" / "runs" / "runs.profile.json").read_text())
    assert (prof["rows_before"], prof["rows_after"], prof["duplicate_rows_dropped"]) == (12, 10, 2)
    assert [a["rows"] for a in prof["audit"] if a["action"] == "dropped duplicate rows"] == [2]
    steps = [e["data"]["text"] for e in of_type(events, "step")]
    assert "Instruction followed: rows identical to an earlier row will be removed" in steps[0]


def test_plan_fits_the_step_budget_and_names_are_unique(tmp_path):
    files = [{"path": f"d{i % 3}/data.csv", "size": i} for i in range(3)]
    files += [{"path": f"f{i}.csv", "size": 10 + i} for i in range(60)]
    task = Task(instructions="", workspace="/workspace", outputs="/outputs", files=files)
    for max_steps in (40, min_steps()):
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


def test_actions_are_tagged_with_their_plan_step():
    task = Task(instructions="", workspace="/ws", outputs="/out", files=[{"path": "a.csv", "size": 5}])
    model = OfflinePlaybook()
    history: list[Turn] = []
    tags = []
    while True:
        action = model.next_action(task, history)
        if action.kind == FINISH:
            break
        tags.append(action.call_id)
        history.append(Turn(action, Observation(exit_code=0, output="ok")))
        # a turn that is not the playbook's (no tag) is not counted as a step of its plan
        history.append(Turn(Action(SHELL, command="ls"), Observation(exit_code=0, output="")))
    assert tags == [f"step-{k}" for k in range(len(plan(task)))]
    kinds = [s.kind for s in plan(task)]
    assert kinds[-2:] == ["analyze", "report"] and "make_report.py" in history[-2].action.command
    # too small a step limit fails at once, saying why
    task.max_steps = min_steps() - 1
    action = model.next_action(task, [])
    assert action.kind == FINISH and action.status == "failed" and f"at least {min_steps()} steps" in action.message


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
