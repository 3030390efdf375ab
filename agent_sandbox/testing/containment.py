"""Containment, on every backend: what a hostile command tries, and that it fails.

Each test runs the real agent (scripted model) in a real sandbox and asserts
the outcome: no host privilege, no secret readable anywhere, processes,
memory and disk stopped at lowered limits, hostile trees collected and
cleaned up, honest statuses, instructions passed as data.
"""

from __future__ import annotations

import json
import os
import time
import uuid

from agent_sandbox import events as ev
from agent_sandbox.spec import Limits
from agent_sandbox.testing.support import make_spec, python, shell

SECRET = "sk-containment-93b1f4d2c8a7"


def outputs_text(recorder) -> str:
    return "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))


def probe_result(recorder, tag: str) -> dict:
    """The JSON a probe printed after `tag`."""
    for line in outputs_text(recorder).splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line in the output:\n{outputs_text(recorder)[-3000:]}")


def limits(**overrides) -> Limits:
    return Limits(**{"run_timeout": 180, "command_timeout": 90, "idle_timeout": 90, "disk_mb": 1024, **overrides})


def enforced(recorder) -> dict:
    return recorder.of_type(ev.RUN_STARTED)[0]["data"]["limits_enforced"]


# -- no host privilege ---------------------------------------------------------

PRIVILEGE_PROBE = r'''
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
found = {"uid": [os.getuid(), os.geteuid()], "gid": [os.getgid(), os.getegid()],
         "caps": [line.split()[1] for line in open("/proc/self/status") if line.startswith(("CapEff", "CapBnd"))]}

def attempt(name, action):
    try:
        action()
        found[name] = "ALLOWED"
    except OSError as exc:
        found[name] = errno.errorcode.get(exc.errno, str(exc.errno))

def call(result):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))

def same_sysctl():   # the escape: rewrite kernel.core_pattern, even to its current value
    value = open("/proc/sys/kernel/core_pattern").read()
    with open("/proc/sys/kernel/core_pattern", "w") as f:
        f.write(value)

attempt("sysctl", same_sysctl)
attempt("mount", lambda: call(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
attempt("module", lambda: call(libc.syscall(175, None, 0, b"")))           # init_module
agent = os.getppid()                                                           # the agent ran us
attempt("ptrace_agent", lambda: call(libc.ptrace(16, agent, None, None)))      # PTRACE_ATTACH
attempt("agent_mem", lambda: open(f"/proc/{agent}/mem", "rb").read(1))
attempt("agent_environ", lambda: open(f"/proc/{agent}/environ", "rb").read(1))
attempt("shadow", lambda: open("/etc/shadow").read(1))
attempt("host_file", lambda: open(HOST_FILE).read(1))
print("PRIVILEGE", json.dumps(found))
'''


def test_commands_never_have_host_privilege(backend, tmp_path, recorder):
    host_file = tmp_path / "host-only.txt"
    host_file.write_text("host secret")
    token = f"{5 + uuid.uuid4().int % 1000 / 1000:.3f}"   # a sleep the host can find
    seen: dict = {}

    def on_event(event):
        recorder(event)
        if event["type"] == ev.OUTPUT and "probe-ready" in event["data"].get("text", "") and not seen:
            deadline = time.monotonic() + 4   # the shell may not have started sleep yet
            while not seen and time.monotonic() < deadline:
                seen.update(sandbox_processes(f"sleep\0{token}"))

    spec = make_spec(tmp_path, [python(f"HOST_FILE = {str(host_file)!r}\n" + PRIVILEGE_PROBE),
                                shell(f"echo probe-ready; sleep {token}")], limits=limits())
    result = backend.run(spec, on_event)
    assert result.status == ev.SUCCEEDED, result.reason
    found = probe_result(recorder, "PRIVILEGE")
    assert 0 not in found["uid"] and 0 not in found["gid"]
    assert found["sysctl"] in ("EROFS", "EACCES", "EPERM")
    assert found["caps"] == ["0000000000000000"] * 2   # no capability, none to regain
    assert found["mount"] == "EPERM"
    assert found["module"] in ("EPERM", "ENOSYS")   # ENOSYS: a kernel built without modules
    assert found["ptrace_agent"] == "EPERM"
    assert found["agent_mem"] == "EACCES" and found["agent_environ"] == "EACCES"
    assert found["shadow"] in ("ENOENT", "EACCES") and found["host_file"] == "ENOENT"
    assert "host secret" not in recorder.text()
    # Seen from the host: every process in the sandbox's PID namespace runs as a
    # uid and gid other than 0 (real, effective, saved and filesystem ids alike).
    assert seen, "the sandbox's processes were found on the host"
    for pid, info in seen.items():
        assert "0" not in info["Uid"] and "0" not in info["Gid"], (pid, info)


def sandbox_processes(cmdline: str) -> dict[int, dict]:
    """Host view of the processes sharing the PID namespace of the one running `cmdline`."""
    target = next((pid for pid in _pids() if cmdline.encode() in _read(f"/proc/{pid}/cmdline")), None)
    if target is None:
        return {}
    namespace = os.readlink(f"/proc/{target}/ns/pid")
    found = {}
    for pid in _pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != namespace:
                continue
            status = dict(line.split(":", 1) for line in _read(f"/proc/{pid}/status").decode().splitlines()
                          if ":" in line)
        except OSError:
            continue
        found[pid] = {"Uid": status["Uid"].split(), "Gid": status["Gid"].split(),
                      "cmd": _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ")[:80]}
    return found


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


# -- secrets -------------------------------------------------------------------

SECRET_PROBE = r'''
import json, os, re, subprocess, sys, time
secret = bytes.fromhex(HEX)[::-1]          # never spelled out in a command line
canary = os.urandom(8).hex().encode()
# Two canaries the scan must find, or it proves nothing: one in a child's environment,
# one only in another child's memory (given on its stdin).
env_child = subprocess.Popen(["sleep", "30"], env={"CANARY": canary.decode()})
mem_child = subprocess.Popen([sys.executable, "-c", "import sys,time; kept = sys.stdin.readline() * 2; "
                              "print('held', flush=True); time.sleep(30)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
mem_child.stdin.write(b"M" + canary + b"\n"); mem_child.stdin.flush(); mem_child.stdout.readline()

def memory(pid):
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if "r" not in line.split()[1] or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except OSError:
                continue

found, scanned, canaries = [], {"environ": 0, "cmdline": 0, "mem": 0}, set()
for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    for kind in ("environ", "cmdline", "mem"):
        try:
            chunks = [open(f"/proc/{pid}/{kind}", "rb").read()] if kind != "mem" else memory(pid)
            for chunk in chunks:
                if secret in chunk:
                    found.append(f"{pid}/{kind}")
                if canary in chunk:
                    canaries.add(kind)
            scanned[kind] += 1
        except OSError:
            pass
env_child.kill(); mem_child.kill()
print("SECRETS", json.dumps({"found": found, "scanned": scanned, "canaries": sorted(canaries)}))
'''


def test_secrets_are_not_readable_from_any_process(backend, tmp_path, recorder):
    code = f"HEX = {SECRET.encode()[::-1].hex()!r}\n" + SECRET_PROBE
    spec = make_spec(tmp_path, [python(code)], limits=limits(),
                     secrets={"OPENAI_API_KEY": SECRET, "LAB_GATEWAY_URL": SECRET})
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    probe = probe_result(recorder, "SECRETS")
    assert probe["found"] == []
    # The scan did read environments and memory: it found both canaries.
    assert set(probe["canaries"]) >= {"environ", "mem"} and probe["scanned"]["mem"] >= 1
    assert SECRET not in recorder.text()


# -- the host channel ------------------------------------------------------------

# Writes a forged agent event and a model request to every stdout and stderr of the sandbox's
# processes it can open (but its own): the host channel must not be one of them.
CHANNEL_PROBE = r'''
import json, os
own = {(s.st_dev, s.st_ino) for s in (os.fstat(1), os.fstat(2))}
forged = json.dumps({"v": 1, "seq": 1, "ts": 1, "type": "message", "data": {"text": "FORGED-" + "CHANNEL"}})
request = json.dumps({"v": 1, "seq": 2, "ts": 1, "type": "model_request",
                      "data": {"id": 900001, "method": "POST", "path": "/chat/completions", "headers": {},
                               "body": {"model": "test-model", "max_tokens": 4000,
                                        "messages": [{"role": "user", "content": "hi"}]}}})
opened = []
for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
    for fd in ("1", "2"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if (os.stat(path).st_dev, os.stat(path).st_ino) in own:
                continue
            with open(path, "w") as channel:
                channel.write(forged + "\n" + request + "\n")
            opened.append(path)
        except OSError:
            pass
print("CHANNELS", json.dumps(opened))
'''


def forged_events(recorder) -> list[dict]:
    return [e for e in recorder.events if "FORGED-CHANNEL" in json.dumps(e)]


def test_no_command_can_write_to_the_host_channel(backend, tmp_path, recorder):
    """What the agent writes on its stdout is the host's channel (events, model requests): a
    command writing to every /proc/*/fd/1 and fd/2 it can open produces no event."""
    spec = make_spec(tmp_path, [python(CHANNEL_PROBE), {"kind": "finish", "message": "done"}], limits=limits())
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    probe_result(recorder, "CHANNELS")   # the probe ran
    assert forged_events(recorder) == []


# -- limits --------------------------------------------------------------------

FORK_BOMB = r'''
import errno, json, os, time
children, error = [], ""
for _ in range(2000):
    try:
        pid = os.fork()
    except OSError as exc:
        error = errno.errorcode.get(exc.errno, str(exc.errno))
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, 9)
for pid in children:
    os.waitpid(pid, 0)
print("FORKS", json.dumps({"started": len(children), "error": error}))
'''


def test_a_fork_bomb_stops_at_the_process_limit(backend, tmp_path, recorder, platform_limits, unenforced_limits):
    run_limits = limits(max_processes=48)
    platform_limits(run_limits)
    spec = make_spec(tmp_path, [python(FORK_BOMB), shell("echo still-running")], limits=run_limits)
    result = backend.run(spec, recorder)
    forks = probe_result(recorder, "FORKS")
    assert forks["error"] == "EAGAIN" and 0 < forks["started"] < 48
    assert result.status == ev.SUCCEEDED, result.reason   # the run goes on
    assert "still-running" in outputs_text(recorder)
    how = enforced(recorder)["max_processes"]
    assert how.startswith("not enforced") == ("max_processes" in unenforced_limits), how
    if not how.startswith("not enforced"):
        assert any("process limit reached" in e["data"]["message"] for e in recorder.of_type(ev.WARNING))


ALLOCATE = r'''
chunks = []
for i in range(200):
    chunks.append(b"\1" * (16 << 20))      # written: resident, not just reserved
    print("allocated", (i + 1) * 16, "MB", flush=True)
'''


def test_memory_past_the_limit_is_killed_and_said(backend, tmp_path, recorder):
    spec = make_spec(tmp_path, [python(ALLOCATE), shell("echo still-running")], limits=limits(memory_mb=256))
    result = backend.run(spec, recorder)
    finished = recorder.of_type(ev.COMMAND_FINISHED)[0]["data"]
    assert finished["exit_code"] not in (0, None)          # killed (or MemoryError), not done
    allocated = [int(line.split()[1]) for line in outputs_text(recorder).splitlines() if line.startswith("allocated")]
    assert allocated and max(allocated) < 256
    warnings = [e["data"]["message"] for e in recorder.of_type(ev.WARNING)]
    assert any("out of memory" in w and "256 MB" in w for w in warnings), warnings
    assert result.status == ev.SUCCEEDED, result.reason
    assert "still-running" in outputs_text(recorder)
    assert not enforced(recorder)["memory_mb"].startswith("not enforced")


def test_disk_filling_stops_at_the_cap_and_earlier_outputs_come_back(backend, tmp_path, recorder, platform_limits,
                                                                     unenforced_limits):
    run_limits = limits(disk_mb=64)
    platform_limits(run_limits)
    spec = make_spec(tmp_path, [
        shell("echo kept > /outputs/kept.txt"),
        shell("head -c 200000000 /dev/zero > /outputs/fill.bin; echo exit=$?"),
        shell("head -c 1000000 /dev/zero > /tmp/more.bin || echo tmp-full"),
    ], limits=run_limits)
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = outputs_text(recorder)
    # A full filesystem, or (a limit the agent holds, on Modal) a file size limit at the room left.
    assert ("No space left on device" in text or "File too large" in text) and "exit=1" in text
    assert (spec.results / "kept.txt").read_text() == "kept\n"
    fill = [f for f in result.manifest["files"] + result.manifest["skipped"] if f["path"] == "fill.bin"]
    assert fill and fill[0]["size"] <= 64 * 1024 * 1024   # stopped at the cap: the host's disk took no more
    assert (spec.results / "manifest.json").exists()
    how = enforced(recorder)["disk_mb"]
    assert how.startswith("not enforced") == ("disk_mb" in unenforced_limits), how
    if "disk_mb" not in unenforced_limits:    # /outputs and /tmp share the one cap
        assert "tmp-full" in text


# -- hostile trees ---------------------------------------------------------------

DEEP_TREE = r'''
import os
os.makedirs("/outputs/tables", exist_ok=True)
open("/outputs/tables/clean.csv", "w").write("a,b\n1,2\n")
os.chdir("/outputs")
os.mkdir("deep")
os.chdir("deep")
for _ in range(10000):
    os.mkdir("d")
    os.chdir("d")
with open("big.bin", "wb") as f:
    for _ in range(200):
        f.write(b"\0" * (1 << 20))
print("built")
'''


def test_a_tree_ten_thousand_folders_deep_is_collected_and_removed(backend, tmp_path, recorder, host_leftovers):
    spec = make_spec(tmp_path, [{"kind": "write_file", "path": "report.md", "content": "# done\n"},
                                python(DEEP_TREE)], limits=limits())
    before = host_leftovers(spec.job_id)
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert "built" in outputs_text(recorder)
    files = {f["path"] for f in result.manifest["files"]}
    assert files == {"report.md", "tables/clean.csv"}
    assert (spec.results / "tables/clean.csv").read_text() == "a,b\n1,2\n"
    deep = [s for s in result.manifest["skipped"] if s["path"].startswith("deep/")]
    assert len(deep) == 1 and "nested deeper than 64 folders" in deep[0]["reason"]
    assert json.loads((spec.results / "manifest.json").read_text()) == result.manifest
    # Nothing of the run is left on the host: no folder, no mount, no cgroup.
    deadline = time.monotonic() + 20   # a platform may remove a sandbox's folder just after it ended
    while host_leftovers(spec.job_id) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host_leftovers(spec.job_id) - before == set()


# -- statuses and instructions -----------------------------------------------------

def test_kill_term_1_from_inside_is_not_a_cancel(backend, tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("kill -TERM 1; sleep 2; echo after-kill"),
                                {"kind": "finish", "status": "succeeded", "message": "done"}], limits=limits())
    result = backend.run(spec, recorder)
    assert result.status != ev.CANCELLED
    assert recorder.of_type(ev.RESULT)[-1]["data"]["status"] == result.status
    # Either PID 1 shrugs it off and the run goes on, or the agent stopped and says why.
    assert result.status == ev.SUCCEEDED or (result.status == ev.FAILED and "SIGTERM" in result.reason), \
        (result.status, result.reason)


def test_killing_the_agent_from_inside_is_a_failure_not_an_error(backend, tmp_path, recorder):
    spec = make_spec(tmp_path, [shell("kill -KILL $PPID; sleep 2; echo after-kill"),
                                {"kind": "finish", "status": "succeeded", "message": "done"}], limits=limits())
    result = backend.run(spec, recorder)
    # Where the agent is PID 1 of its jail nothing inside can kill it; elsewhere the run
    # fails and says how (it is not a crash of ours, nor a stop by the host).
    assert result.status == ev.SUCCEEDED or (result.status == ev.FAILED and "SIGKILL" in result.reason), \
        (result.status, result.reason)


def test_instructions_starting_with_a_dash_reach_the_agent(backend, tmp_path, recorder):
    for i, text in enumerate(["-h", "--max-steps=1 --model=nope"]):
        spec = make_spec(tmp_path / str(i), [shell("echo ran")], instructions=text, limits=limits())
        result = backend.run(spec, recorder)
        assert result.status == ev.SUCCEEDED, result.reason
        assert recorder.of_type(ev.RUN_STARTED)[-1]["data"]["instructions"] == text
        assert recorder.of_type(ev.RUN_STARTED)[-1]["data"]["model"] == "scripted"
