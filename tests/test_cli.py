"""The host CLI, end to end: real subprocess, real local sandbox, scripted model."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def cli(*args, script=None, timeout=120):
    env = dict(os.environ)
    if script is not None:
        env["AGENT_SCRIPT"] = json.dumps(script)
    return subprocess.run([sys.executable, "-m", "agent_sandbox", "run", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_run_prints_live_log_and_leaves_results(tmp_path):
    data = tmp_path / "measurements.csv"
    data.write_text("t,v\n1,2\n")
    script = [{"kind": "shell", "thought": "count rows", "command": "wc -l /workspace/measurements.csv"},
              {"kind": "python", "code": "open('/outputs/summary.txt','w').write('rows=1')"},
              {"kind": "finish", "message": "all done"}]
    proc = cli("--model", "scripted", "--output", str(tmp_path / "out"), str(data), script=script)
    assert proc.returncode == 0, proc.stderr
    assert "[1] count rows" in proc.stdout and "$ wc -l /workspace/measurements.csv" in proc.stdout
    assert "2 /workspace/measurements.csv" in proc.stdout and "all done" in proc.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["summary.txt"]
    assert (tmp_path / "out" / "summary.txt").read_text() == "rows=1"


def test_json_mode_prints_events(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    proc = cli("--json", "--model", "scripted", "--output", str(tmp_path / "out"), str(data), script=[])
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert "run_started" in types and "run_finished" in types and types[-1] == "result"


def test_failures_exit_non_zero_with_one_line_reason(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    proc = cli("--model", "scripted", "--output", str(tmp_path / "o1"), str(data),
               script=[{"kind": "finish", "status": "failed", "message": "bad data"}])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: run failed: bad data"

    proc = cli("--output", str(tmp_path / "o2"), str(tmp_path / "missing.csv"))
    assert proc.returncode == 2 and "not a file" in proc.stderr

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    proc = cli("--output", str(tmp_path / "full"), str(data))
    assert proc.returncode == 2 and "not empty" in proc.stderr

    proc = cli("--backend", "nope", "--output", str(tmp_path / "o3"), str(data))
    assert proc.returncode == 2 and "unknown backend" in proc.stderr


def test_the_workdir_variable_and_its_deprecated_name(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    for variable, warned in (("AGENT_SANDBOX_WORKDIR", False), ("AGENT_SANDBOX_OUTPUTS", True)):
        workdir = tmp_path / variable
        env = {**os.environ, variable: str(workdir), "AGENT_SCRIPT": "[]"}
        env.pop("AGENT_SANDBOX_WORKDIR" if warned else "AGENT_SANDBOX_OUTPUTS", None)
        proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--model", "scripted", "--output",
                               str(tmp_path / f"out-{variable}"), str(data)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        [job] = (workdir / "uploaded_files").iterdir()
        assert (job / "d.csv").read_text() == "x\n"
        assert ("AGENT_SANDBOX_OUTPUTS is deprecated; set AGENT_SANDBOX_WORKDIR instead" in proc.stderr) == warned
