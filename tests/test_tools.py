import os
import subprocess
import sys
import time

from agent_sandbox.agent.tools import command_env, run_command


def test_output_is_captured_streamed_and_capped(tmp_path):
    """The head and the tail (where a failing command's error is) for the model; the first
    max_chars live, then the end, in the log; all of it in a file."""
    seen = []
    full = tmp_path / "out" / "step-1.txt"
    obs = run_command(["/bin/sh", "-c", "echo one; echo two >&2; sleep 0.3; seq 1 5000; echo boom >&2; exit 3"],
                      cwd="/", timeout=30, max_chars=100, on_output=lambda s, t: seen.append((s, t)),
                      full_output=full)
    assert obs.exit_code == 3 and obs.truncated and obs.total_chars == 23906
    head, marker, tail = obs.output.partition(f"\n[... {obs.elided:,} characters elided ...]\n")
    assert marker and len(head) == 40 and 100 + obs.elided == obs.total_chars
    # The end of stdout, and the error even when its thread read it before the last of stdout.
    assert set(head.split()[:2]) == {"one", "two"} and "4999\n5000\n" in tail and tail.endswith("boom\n")
    assert {s for s, _ in seen} == {"stdout", "stderr"}
    live = "".join(t for _, t in seen)
    assert "\n1\n2\n" in live[:20] and "characters not shown; the end:]" in live and live.endswith("boom\n")
    assert len(live) < 100 + 60 + 80
    assert full.read_text().count("\n") == 5003 and obs.full_output == str(full)


def test_timeout_kills_the_process_group(tmp_path):
    marker = tmp_path / "late"
    t0 = time.monotonic()
    obs = run_command(["/bin/sh", "-c", f"(sleep 2; echo late > {marker}) & sleep 60"], cwd=str(tmp_path),
                      timeout=1, max_chars=1000)
    assert obs.timed_out and obs.exit_code == -9
    assert time.monotonic() - t0 < 10
    time.sleep(2.5)
    assert not marker.exists()


def test_agent_kills_detached_grandchildren(tmp_path):
    """setsid'd grandchildren leave the process group; the agent (a subreaper) still kills them."""
    import json
    marker = tmp_path / "late"
    ws, out = tmp_path / "ws", tmp_path / "out"
    ws.mkdir()
    script = [{"kind": "shell", "command": f"setsid sh -c 'sleep 2; echo late > {marker}' & sleep 60"}]
    env = dict(os.environ, AGENT_SCRIPT=json.dumps(script))
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox.agent", "--workspace", str(ws),
                           "--outputs", str(out), "--model", "scripted", "--command-timeout", "1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert '"status":"command_timeout"' in proc.stdout
    time.sleep(2.5)
    assert not marker.exists()


def test_command_env_has_no_secrets():
    env = command_env({"PATH": "/usr/bin", "OPENAI_API_KEY": "x", "github_token": "y", "DB_PASSWORD": "z",
                       "MY_CREDENTIALS": "c", "LAB_NAME": "ok", "CUSTOM": "hidden",
                       "AGENT_SANDBOX_SECRET_NAMES": "CUSTOM"})
    assert env["LAB_NAME"] == "ok"
    for name in ("OPENAI_API_KEY", "github_token", "DB_PASSWORD", "MY_CREDENTIALS", "CUSTOM",
                 "AGENT_SANDBOX_SECRET_NAMES"):
        assert name not in env
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
