"""What the local bubblewrap jail must hide and forbid (beyond the conformance suite)."""

import json

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from tests.conftest import make_spec

SECRET = "sk-local-0d9e8f7a6b"


def shell(command):
    return {"kind": "shell", "command": command}


def outputs_text(recorder):
    return "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))


def test_workspace_is_read_only_and_originals_unchanged(tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("echo changed > /workspace/data.csv; echo $?; "
                                      "touch /workspace/new.txt 2>&1; ls /workspace")])
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.SUCCEEDED
    assert (spec.workspace / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert not (spec.workspace / "new.txt").exists()
    assert "Read-only file system" in outputs_text(recorder)


def test_host_is_hidden_and_network_is_off(tmp_path, recorder):
    marker = tmp_path / "host-only.txt"
    marker.write_text("host secret")
    spec = make_spec(tmp_path, [
        shell(f"cat {marker} 2>&1; ls /root /home 2>&1; cat /proc/1/environ 2>&1 | tr '\\0' ' '; echo"),
        {"kind": "python", "code": "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                                   "    print('NET-OPEN')\nexcept OSError as e:\n    print('NET-BLOCKED', e)"},
        shell("cat /proc/$PPID/environ 2>&1 | tr '\\0' ' '; echo; ps -e -o pid,comm 2>/dev/null || ls /proc"),
    ], secrets={"ANTHROPIC_API_KEY": SECRET})
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = outputs_text(recorder)
    assert "host secret" not in text and "No such file" in text
    lines = text.splitlines()
    assert any(line.startswith("NET-BLOCKED") for line in lines)
    assert "NET-OPEN" not in lines
    assert "Permission denied" in text  # /proc/<agent>/environ: the agent is not dumpable
    assert SECRET not in json.dumps(recorder.events)


def test_refuses_to_run_without_bubblewrap_unless_allowed(tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("echo hi")])
    result = get_backend("local", bwrap="", allow_unsandboxed=False).run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "bubblewrap" in result.reason
    # As root, not even when allowed: the commands would be host root (test_unprivileged.py runs
    # the allowed case as a normal user).
    spec = make_spec(tmp_path / "second", [shell("echo hi")])
    result = get_backend("local", bwrap="", allow_unsandboxed=True).run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "as root" in result.reason


def test_missing_workspace_is_a_clear_error(tmp_path, recorder):
    spec = make_spec(tmp_path, [])
    spec.workspace = tmp_path / "nope"
    result = get_backend("local").run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "does not exist" in result.reason


def test_runs_with_a_python_environment_under_tmp(tmp_path, recorder):
    """A clone (and its venv) under /tmp must not be hidden by the jail's own /tmp."""
    import subprocess
    import sys
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    spec = make_spec(tmp_path, [shell("echo from-tmp-venv; ls /tmp")])
    result = get_backend("local", python=str(venv / "bin" / "python")).run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert "from-tmp-venv" in outputs_text(recorder)
