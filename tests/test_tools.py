import os
import subprocess
import sys
import time

from agent_sandbox.agent.tools import command_env, run_command


def test_output_is_captured_streamed_and_capped():
    seen = []
    obs = run_command(["/bin/sh", "-c", "echo one; echo two >&2; sleep 0.3; seq 1 5000"], cwd="/", timeout=30,
                      max_chars=100, on_output=lambda s, t: seen.append((s, t)))
    assert obs.exit_code == 0 and obs.truncated and len(obs.output) == 100
    assert "one\n" in obs.output and "two\n" in obs.output
    assert {s for s, _ in seen} == {"stdout", "stderr"}
    assert sum(len(t) for _, t in seen) == 100


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
