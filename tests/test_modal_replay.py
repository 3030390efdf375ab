"""The emulator's replay runtime (issue 25.2): a recorded agent run played in each sandbox,
timed as recorded, its outputs written to the volume, no process started. The client
caches its server per process, so the runs against this emulator go in a process of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modal_emulator.replay import Recording
from tests.conftest import REPO
from tests.modal_support import EmulatorProcess

TICKS = [{"kind": "shell", "command": "echo kept > $OUT/kept.txt; for i in 1 2 3; do echo tick $i; sleep 1; done"}]
RUNS = r'''
import json, pathlib, sys, time
from agent_sandbox.backends.modal import ModalBackend
from tests.conftest import make_spec
backend, root = ModalBackend(), pathlib.Path(sys.argv[1])
specs = [make_spec(root / str(i), []) for i in range(int(sys.argv[2]))]
events = {s.job_id: [] for s in specs}
futures = [backend.submit(s, lambda e, j=s.job_id: events[j].append((time.time(), e))) for s in specs]
results = [f.result() for f in futures]
print(json.dumps([{"status": r.status, "files": r.manifest["files"], "events": events[s.job_id]}
                  for s, r in zip(specs, results)], default=str))
'''


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recording")
    (folder / "ws").mkdir()
    path = folder / "ticks.jsonl"
    env = dict(os.environ, AGENT_SCRIPT=json.dumps(TICKS).replace("$OUT", str(folder / "out")),
               MODAL_TASK_ID="ta-recorded")
    subprocess.run([sys.executable, "-m", "modal_emulator.replay", "record", str(path), "--outputs",
                    str(folder / "out"), "--", sys.executable, "-m", "agent_sandbox.agent", "--workspace",
                    str(folder / "ws"), "--outputs", str(folder / "out"), "--model", "scripted"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    return path


def test_a_recording_holds_the_lines_files_and_exit_of_a_real_run(recording):
    played = Recording.load(recording)
    ticks = [t for t, _, line in played.lines if b'"text":"tick ' in line]
    assert len(ticks) == 3 and ticks[2] - ticks[0] > 1.5   # a second apart, as they were printed
    assert [path for _, path, _ in played.files] == ["kept.txt"] and played.exit_code == 0


def test_each_sandbox_plays_the_recording_without_starting_a_process(recording, tmp_path):
    emulator = EmulatorProcess("replay", "--replay", str(recording), verbose=False)
    try:
        env = {**os.environ, **emulator.env()}
        started = time.time()
        proc = subprocess.run([sys.executable, "-c", RUNS, str(tmp_path), "4"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        children = [pid for task in Path(f"/proc/{emulator.proc.pid}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
    finally:
        emulator.stop()
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["status"] for r in runs] == ["succeeded"] * 4
    assert all([f["path"] for f in r["files"]] == ["kept.txt"] for r in runs)
    for run in runs:
        ticks = [(received, e) for received, e in run["events"] if e["type"] == "output"]
        assert [e["data"]["text"] for _, e in ticks] == ["tick 1\n", "tick 2\n", "tick 3\n"]
        assert ticks[2][1]["ts"] - ticks[0][1]["ts"] > 1.5, "timed as recorded"
        assert all(started < e["ts"] <= received for received, e in ticks), "each event stamped when played"
    assert children == [], "no process was started for any sandbox"


def test_the_replay_runtime_needs_its_recording(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "modal_emulator", "--port", "0", "--runtime", "replay",
                           "--state", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--replay" in proc.stderr.splitlines()[-1]
    (tmp_path / "bad.jsonl").write_text("not json\n")
    proc = subprocess.run([sys.executable, "-m", "modal_emulator", "--port", "0", "--runtime", "replay",
                           "--replay", str(tmp_path / "bad.jsonl"), "--state", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bad.jsonl:1: not a recording line" in proc.stderr
