"""The host CLI, end to end: real subprocess, real local sandbox, scripted model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
        # The workspace was made there, and went when the run ended (a copy of the inputs).
        assert (workdir / "uploaded_files").is_dir() and not any((workdir / "uploaded_files").iterdir())
        assert ("AGENT_SANDBOX_OUTPUTS is deprecated; set AGENT_SANDBOX_WORKDIR instead" in proc.stderr) == warned


def one_line_error(proc) -> str:
    """The CLI stopped with exit 2 and exactly one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def cli_env(**env):
    def run(*args, timeout=120):
        return subprocess.run([sys.executable, "-m", "agent_sandbox", "run", *args], cwd=REPO,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    return run


def test_bad_options_and_settings_are_one_line_before_the_sandbox_starts(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    out = tmp_path / "out"
    (tmp_path / "a-file").write_text("")
    assert "is a file; name a folder" in one_line_error(cli("--output", str(tmp_path / "a-file"), str(data)))
    for option, value in (("--run-timeout", "-5"), ("--command-timeout", "0"), ("--idle-timeout", "abc"),
                          ("--max-steps", "0")):
        err = one_line_error(cli(option, value, "--output", str(out), str(data)))
        assert option in err and ("above 0" in err or "expected a number" in err), err
    for variable, value, expected in (("AGENT_SANDBOX_RUN_TIMEOUT", "abc", "expected a number"),
                                      ("AGENT_SANDBOX_RUN_TIMEOUT", "0", "above 0"),
                                      ("AGENT_SANDBOX_IDLE_TIMEOUT", "-1", "above 0")):
        err = one_line_error(cli_env(**{variable: value})("--output", str(out), str(data)))
        assert variable in err and expected in err, err
    err = one_line_error(cli("--my-files", str(tmp_path / "missing"), "--output", str(out), str(data)))
    assert "--my-files" in err and "no such folder" in err
    err = one_line_error(cli_env(AGENT_SANDBOX_MY_FILES=str(tmp_path / "gone"))("--output", str(out), str(data)))
    assert "AGENT_SANDBOX_MY_FILES" in err and "no such folder" in err
    err = one_line_error(cli("--model", "gpt-nonsense", "--output", str(out), str(data)))
    assert "unknown model 'gpt-nonsense'" in err and "offline" in err
    assert not out.exists(), "refused before anything was prepared or started"


def test_help_lists_the_backends_and_models():
    proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    text = " ".join(proc.stdout.split())
    assert "local, docker, modal" in text and "offline, scripted" in text, text


def test_a_second_run_into_the_same_folder_says_how_to_proceed(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    out = tmp_path / "out"
    write = [{"kind": "write_file", "path": "first.txt", "content": "1"}]
    assert cli("--model", "scripted", "--output", str(out), str(data), script=write).returncode == 0
    err = one_line_error(cli("--model", "scripted", "--output", str(out), str(data), script=[]))
    assert "already holds the results of a run" in err and "--force" in err and f"--output {out}-" in err
    assert (out / "first.txt").read_text() == "1", "nothing was lost"
    again = cli("--model", "scripted", "--force", "--output", str(out), str(data),
                script=[{"kind": "write_file", "path": "second.txt", "content": "2"}])
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "second.txt"], "replaced, not mixed"
    err = one_line_error(cli("--force", "--follow-up", str(out), "--output", str(out)))
    assert "--follow-up continues from" in err and (out / "second.txt").exists(), "a follow-up never erases its source"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    err = one_line_error(cli("--force", "--output", str(tmp_path / "mine"), str(data)))
    assert "not empty" in err and (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_the_log_says_which_file_the_job_got_when_an_upload_and_my_files_share_a_name(tmp_path):
    my_files = tmp_path / "my_files"
    my_files.mkdir()
    (my_files / "data.csv").write_text("from my_files\n")
    (my_files / "units.csv").write_text("u\n")
    data = tmp_path / "data.csv"
    data.write_text("uploaded\n")
    proc = cli("--model", "scripted", "--my-files", str(my_files), "--output", str(tmp_path / "out"), str(data),
               script=[{"kind": "shell", "command": "cat /workspace/data.csv /workspace/units.csv"}])
    assert proc.returncode == 0, proc.stderr
    assert ("note: data.csv is both an upload and in my_files/: the job got the upload "
            "(my_files/data.csv was not copied)") in proc.stderr
    assert "units.csv" not in proc.stderr
    assert "uploaded" in proc.stdout and "from my_files" not in proc.stdout


# -- stopping the CLI ----------------------------------------------------------

PARTIAL_THEN_WAIT = [{"kind": "python", "code": "open('/outputs/partial.txt', 'w').write('half done')"},
                     {"kind": "shell", "command": "echo ready; sleep 300"}]


def start_cli(tmp_path, script):
    """The CLI in a process group of its own (as a shell runs it), up to the agent's "ready"."""
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    env = {**os.environ, "AGENT_SCRIPT": json.dumps(script)}
    # --workdir: a CLI killed with SIGKILL cannot remove its workspace; it stays in tmp_path
    proc = subprocess.Popen([sys.executable, "-m", "agent_sandbox", "run", "--json", "--model", "scripted",
                             "--workdir", str(tmp_path / "work"), "--output", str(tmp_path / "out"), str(data)],
                            cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "output" and "ready" in event["data"]["text"]:
            return proc
    raise AssertionError(f"the agent never got ready: {proc.stderr.read()}")


def running_jail(tmp_path) -> tuple[str, set[str]]:
    """The run's sandbox id, as the manifest says while it runs, and its jail's PID namespaces."""
    from tests.leftovers import in_cgroup, pid_namespaces
    if os.geteuid() != 0:
        pytest.skip("the jail's cgroup (its sandbox id) needs root")
    run = json.loads((tmp_path / "out" / "manifest.json").read_text())["run"]
    assert run["status"] == "running" and run["backend"] == "local" and run["sandbox_id"]
    pids = in_cgroup(run["sandbox_id"])
    namespaces = pid_namespaces(pids) - pid_namespaces([os.getpid()])
    assert len(pids) >= 3 and namespaces, "the agent, its shell and sleep run in the jail"
    return run["sandbox_id"], namespaces


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_sandbox_and_keeps_the_partial_outputs(tmp_path, sig):
    from tests.leftovers import in_cgroup, in_namespaces
    proc = start_cli(tmp_path, PARTIAL_THEN_WAIT)
    sandbox_id, namespaces = running_jail(tmp_path)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)   # Ctrl-C: the terminal signals the whole foreground group
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == "error: run cancelled: cancelled by the user"
    assert json.loads(out.splitlines()[-1])["data"]["status"] == "cancelled"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    run = manifest["run"]   # what the backend recorded, then what a follow-up needs (instructions, ...)
    assert {k: run[k] for k in ("status", "reason", "backend", "sandbox_id")} == {
        "status": "cancelled", "reason": "cancelled by the user", "backend": "local", "sandbox_id": sandbox_id}
    assert run["model"] == "scripted" and run["inputs"]
    assert [f["path"] for f in manifest["files"]] == ["partial.txt"]
    assert (tmp_path / "out" / "partial.txt").read_text() == "half done"
    assert in_cgroup(sandbox_id) == [] and in_namespaces(namespaces) == []


def test_sigkill_of_the_cli_leaves_no_process_behind(tmp_path):
    from tests.leftovers import in_cgroup, in_namespaces, wait_until
    proc = start_cli(tmp_path, PARTIAL_THEN_WAIT)
    sandbox_id, namespaces = running_jail(tmp_path)
    proc.kill()
    proc.wait()
    wait_until(lambda: not in_cgroup(sandbox_id) and not in_namespaces(namespaces), 10,
               "the jail dies with the CLI")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["run"]["status"] == "running", "the folder says the run never finished, and where it ran"


def test_a_cli_killed_while_its_jail_starts_leaves_no_agent(tmp_path):
    """Killed at any moment of the jail's start (before bubblewrap asked for its parent-death
    signal, while it sets up, as the agent starts): no agent or command survives it, and the
    next start's sweep ends whatever bubblewrap itself left in the run's cgroup."""
    from agent_sandbox.backends import get_backend
    from tests.leftovers import in_cgroup, wait_until
    if os.geteuid() != 0:
        pytest.skip("the jail's cgroup (its sandbox id) needs root")
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    env = {**os.environ, "AGENT_SCRIPT": json.dumps([{"kind": "shell", "command": "echo ready; sleep 300"}])}
    for n, delay in enumerate((0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4)):
        proc = subprocess.Popen([sys.executable, "-m", "agent_sandbox", "run", "--json", "--model", "scripted",
                                 "--workdir", str(tmp_path / "work"), "--output", str(tmp_path / f"out{n}"),
                                 str(data)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        sandbox_id = next(json.loads(line)["data"]["sandbox_id"] for line in proc.stdout
                          if '"sandbox_id"' in line)
        time.sleep(delay)
        proc.kill()
        proc.wait()

        wait_until(lambda run=sandbox_id: all(_comm(pid) == "bwrap" for pid in in_cgroup(run)), 10,
                   f"the agent dies with the CLI killed {delay}s into the start (only bubblewrap may be left)")
        get_backend("local").sweep_orphans()
        assert in_cgroup(sandbox_id) == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# -- what a run leaves behind -----------------------------------------------------

def own_tmpdir(tmp_path) -> tuple[Path, dict]:
    """A TMPDIR of the test's own (other sessions make such folders in /tmp concurrently), and
    the CLI's environment using it for its workspace and the sandbox's scratch space."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return tmpdir, {**os.environ, "TMPDIR": str(tmpdir), "AGENT_SANDBOX_DISK_MB": "256"}


def cli_in(env: dict, *args, script=None):
    env = {**env, "AGENT_SCRIPT": json.dumps(script or [])}
    return subprocess.Popen([sys.executable, "-m", "agent_sandbox", "run", "--json", "--model", "scripted", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def until_ready(proc) -> None:
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "output" and "ready" in event["data"]["text"]:
            return
    raise AssertionError(f"the agent never got ready: {proc.stderr.read()}")


WAIT = [{"kind": "shell", "command": "echo ready; sleep 300"}]


@pytest.mark.parametrize("ending", ["success", "failure", "cancel", "sigterm", "second-signal",
                                    "missing-input", "sandbox-cannot-start"])
def test_a_cli_run_leaves_no_copy_of_its_inputs_whatever_its_ending(tmp_path, ending):
    """Every run copies its inputs and my_files into a workspace under TMPDIR: it goes when the
    run ends, however it ends (nothing is left in TMPDIR: no workspace, no scratch space)."""
    tmpdir, env = own_tmpdir(tmp_path)
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    out = ["--output", str(tmp_path / "out")]
    before = sorted(os.listdir(tmpdir))
    script = {"success": [{"kind": "finish", "message": "done"}],
              "failure": [{"kind": "finish", "status": "failed", "message": "bad data"}]}.get(ending, WAIT)
    if ending == "missing-input":
        proc = cli_in(env, *out, str(data), str(tmp_path / "missing.csv"))
    elif ending == "sandbox-cannot-start":   # a docker CLI that fails: the run ends before any sandbox
        proc = cli_in({**env, "AGENT_SANDBOX_DOCKER_CLI": "/bin/false"}, "--backend", "docker", *out, str(data))
    else:
        proc = cli_in(env, *out, str(data), script=script)
    if ending in ("cancel", "sigterm", "second-signal"):
        until_ready(proc)
        assert len(os.listdir(tmpdir)) > len(before), "the run's workspace is in this TMPDIR while it runs"
        proc.send_signal(signal.SIGTERM if ending == "sigterm" else signal.SIGINT)
        if ending == "second-signal":
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    expected = {"success": 0, "failure": 1, "cancel": 128 + signal.SIGINT, "sigterm": 128 + signal.SIGTERM,
                "second-signal": (130, 128 + signal.SIGINT), "missing-input": 2, "sandbox-cannot-start": 1}[ending]
    assert proc.returncode in (expected if isinstance(expected, tuple) else (expected,)), err
    assert sorted(os.listdir(tmpdir)) == before, f"{ending}: left {sorted(set(os.listdir(tmpdir)) - set(before))}"
