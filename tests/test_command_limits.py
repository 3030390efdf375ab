"""What the agent holds its commands to where the platform does not (Modal): run directly
(no sandbox), as root the way a Modal sandbox runs the agent, with the scripted model.

Through the emulator the containment suite shows the same on Modal (fork bomb, disk,
memory); here the root path itself: commands as an unprivileged user of the image
with nothing to regain, and `sync /outputs` before the agent ends on Modal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent_sandbox import events as ev
from agent_sandbox.agent.command_limits import CommandLimits, disk_used

LIMITS = {"memory_mb": 256, "max_processes": 40, "disk_mb": 16, "cpu": 1}


@pytest.fixture
def folders():
    """A workspace and outputs a command user can reach (pytest's own folders are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="command-limits-"))
    base.chmod(0o755)
    (base / "ws").mkdir()
    (base / "ws" / "in.csv").write_text("a\n1\n")
    (base / "tmp").mkdir()   # the agent's /tmp: this machine's is shared with others' files
    yield base / "ws", base / "out"
    shutil.rmtree(base, ignore_errors=True)


def run_agent(folders, script, *extra, env=None):
    ws, out = folders
    environ = dict(os.environ, AGENT_SCRIPT=json.dumps(script), TMPDIR=str(ws.parent / "tmp"), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox.agent", "--workspace", str(ws), "--outputs", str(out),
                           "--model", "scripted", "--limits", json.dumps(LIMITS), *extra],
                          capture_output=True, text=True, env=environ, timeout=120)
    events = [ev.parse_line(line) for line in proc.stdout.splitlines()]
    text = "".join(e["data"].get("text", "") for e in events if e["type"] == ev.OUTPUT)
    warnings = [e["data"]["message"] for e in events if e["type"] == ev.WARNING]
    return events, text, warnings


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the agent runs as root on Modal; this test needs root")


@needs_root
def test_as_root_commands_run_as_an_unprivileged_user_with_nothing_to_regain(folders):
    events, text, _ = run_agent(folders, [
        {"kind": "write_file", "path": "notes.txt", "content": "by the agent\n"},
        {"kind": "shell", "command": "id -u; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; "
                                     "echo more >> " + str(folders[1] / "notes.txt") + " && echo appended"},
    ], "--hold-limits")
    lines = text.split("\n")
    assert lines[0] == "65534"   # nobody
    assert all(line.split()[1] == "0000000000000000" for line in lines[1:4]) and lines[4].split()[1] == "1"
    assert "appended" in text, "the command may change what the agent wrote for it"
    assert events[-1]["data"]["status"] == "succeeded"


@needs_root
def test_a_fork_bomb_a_full_disk_and_a_memory_hog_stop_the_command_not_the_agent(folders):
    events, text, warnings = run_agent(folders, [
        {"kind": "shell", "command": "for i in $(seq 1 100); do sleep 5 & done; wait"},
        {"kind": "shell", "command": "head -c 100000000 /dev/zero > " + str(folders[1] / "fill.bin") + "; echo exit=$?"},
        {"kind": "shell", "command": "head -c 400000000 /dev/zero | tail -c 300000000 > /dev/null; echo exit=$?"},
        {"kind": "shell", "command": "echo still-here"},
    ], "--hold-limits")
    assert any(w.startswith("process limit reached") and "40 processes" in w for w in warnings), warnings
    assert "File too large" in text and "exit=1" in text
    assert (folders[1] / "fill.bin").stat().st_size <= 16 * 1024 * 1024
    assert any(w.startswith("disk cap reached") and "16 MB" in w for w in warnings), warnings
    assert any(w.startswith("out of memory") and "192 MB" in w and "256 MB" in w for w in warnings), warnings
    assert "still-here" in text and events[-1]["data"]["status"] == "succeeded"


def test_without_hold_limits_commands_run_as_before(folders):
    _, text, warnings = run_agent(folders, [{"kind": "shell", "command": "id -u"}])
    assert text.strip() == str(os.geteuid()) and not warnings


def test_on_modal_the_agent_syncs_its_outputs_before_it_finishes(folders, tmp_path):
    bin_dir, record = tmp_path / "bin", tmp_path / "synced"
    bin_dir.mkdir()
    (bin_dir / "sync").write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    (bin_dir / "sync").chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    events, _, warnings = run_agent(folders, [{"kind": "shell", "command": "echo x > ../out/x.txt"}],
                                    env={"MODAL_TASK_ID": "ta-test", "PATH": path})
    assert record.read_text() == f"{folders[1]}\n" and not warnings
    (bin_dir / "sync").write_text("#!/bin/sh\necho 'sync: nope' >&2; exit 1\n")
    _, _, warnings = run_agent(folders, [], env={"MODAL_TASK_ID": "ta-test", "PATH": path})
    assert warnings == [f"could not sync {folders[1]} to its volume (exit 1): sync: nope"]
    events, _, _ = run_agent(folders, [], env={"PATH": path})   # not on Modal: no sync
    assert events[-1]["type"] == ev.RUN_FINISHED


def test_disk_used_counts_what_a_sparse_file_holds(tmp_path):
    with open(tmp_path / "sparse.bin", "wb") as f:
        f.truncate(1 << 30)
    (tmp_path / "data.bin").write_bytes(b"x" * 100_000)
    assert 100_000 <= disk_used([str(tmp_path)]) < 200_000


def test_the_memory_cap_leaves_the_agent_its_share():
    assert CommandLimits(256, 0, 0, []).memory_cap_mb == 192
    assert CommandLimits(2048, 0, 0, []).memory_cap_mb == 1536
    assert CommandLimits(100, 0, 0, []).memory_cap_mb == 36
