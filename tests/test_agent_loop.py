"""The agent loop itself, run directly (no sandbox) with the scripted model."""

import json
import os
import subprocess
import sys

from agent_sandbox import events as ev


def run_agent(tmp_path, script, *extra):
    ws, out = tmp_path / "ws", tmp_path / "out"
    ws.mkdir(exist_ok=True)
    (ws / "in.csv").write_text("a\n1\n")
    env = dict(os.environ, AGENT_SCRIPT=json.dumps(script))
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox.agent", "--workspace", str(ws),
                           "--outputs", str(out), "--model", "scripted", *extra],
                          capture_output=True, text=True, env=env, timeout=60)
    return proc, [ev.parse_line(line) for line in proc.stdout.splitlines()], out


def test_observations_feed_back_and_events_are_ordered(tmp_path):
    script = [{"kind": "shell", "command": "cat in.csv", "thought": "read"},
              {"kind": "write_file", "path": "sub/x.txt", "content": "x"},
              {"kind": "shell", "command": "exit 3"},
              {"kind": "finish", "message": "summary"}]
    proc, events, out = run_agent(tmp_path, script)
    assert proc.returncode == 0
    assert all(e["type"] != ev.RAW for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == ev.RUN_STARTED and events[0]["data"]["files"] == 1
    finished = [e["data"]["exit_code"] for e in events if e["type"] == ev.COMMAND_FINISHED]
    assert finished == [0, 0, 3]
    assert (out / "sub" / "x.txt").read_text() == "x"
    assert events[-1]["data"] == {"status": "succeeded", "reason": "", "steps": 3, "summary": "summary",
                                  "output_files": 1}


def test_step_limit_and_escaping_writes(tmp_path):
    script = [{"kind": "write_file", "path": "../escape.txt", "content": "x"}] + \
             [{"kind": "shell", "command": "true"}] * 5
    proc, events, out = run_agent(tmp_path, script, "--max-steps", "3")
    assert proc.returncode == 1
    assert not (tmp_path / "escape.txt").exists()
    assert events[-1]["data"]["status"] == ev.FAILED and "step limit" in events[-1]["data"]["reason"]
