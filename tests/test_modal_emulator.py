"""The emulator's fidelity where our Modal backend depends on it, checked with
the real `modal` client: lifecycle, volumes synced only at termination,
timeouts, network blocking, status codes and injected faults."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid

import modal
import modal.exception as mexc
import pytest

from tests.modal_support import cgroup_limits, shared_emulator


@pytest.fixture(scope="module")
def emulator():
    return shared_emulator()


@pytest.fixture(scope="module")
def app(emulator):
    return modal.App.lookup("emulator-tests", create_if_missing=True)


@pytest.fixture(scope="module")
def image(emulator):
    return modal.Image.debian_slim()


@pytest.fixture
def sandboxes(app, image):
    """Creates sandboxes and makes sure none outlives the test."""
    made = []

    def create(*args, **kwargs):
        kwargs.setdefault("timeout", 60)
        sandbox = modal.Sandbox.create(*args, app=app, image=kwargs.pop("image", image), **kwargs)
        made.append(sandbox)
        return sandbox

    yield create
    for sandbox in made:
        sandbox.terminate()
        try:
            sandbox.wait(raise_on_termination=False)
        except mexc.SandboxTimeoutError:   # it had ended by its own time limit
            pass


def run(sandbox, *command, **kwargs) -> tuple[int, str, str]:
    process = sandbox.exec(*command, **kwargs)
    out, err = process.stdout.read(), process.stderr.read()
    return process.wait(), out, err


def test_volume_sees_writes_only_after_termination(sandboxes):
    with modal.Volume.ephemeral() as volume:
        sandbox = sandboxes(volumes={"/outputs": volume})
        code, _, _ = run(sandbox, "sh", "-c", "echo hi > /outputs/a.txt; mkdir -p /outputs/d; echo x > /outputs/d/b")
        assert code == 0
        assert list(volume.listdir("/", recursive=True)) == []   # not synced while it runs
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        entries = {e.path: e for e in volume.listdir("/", recursive=True)}
        assert set(entries) == {"a.txt", "d", "d/b"}
        assert entries["a.txt"].size == 3
        assert b"".join(volume.read_file("a.txt")) == b"hi\n"


def test_symlinks_and_fifos_are_listed_as_such_and_never_read(sandboxes):
    with modal.Volume.ephemeral() as volume:
        sandbox = sandboxes(volumes={"/outputs": volume})
        run(sandbox, "sh", "-c", "ln -s /etc/passwd /outputs/link; mkfifo /outputs/fifo")
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        kinds = {e.path: e.type for e in volume.listdir("/")}
        assert kinds == {"link": modal.volume.FileEntryType.SYMLINK, "fifo": modal.volume.FileEntryType.FIFO}
        with pytest.raises(FileNotFoundError):
            b"".join(volume.read_file("link"))


def test_exec_after_termination_is_not_found(sandboxes):
    sandbox = sandboxes()
    assert run(sandbox, "true")[0] == 0
    sandbox.terminate()
    sandbox.wait(raise_on_termination=False)
    assert sandbox.returncode == 137
    with pytest.raises(mexc.NotFoundError):
        sandbox.exec("true")


def test_sandbox_lifetime_timeout(sandboxes):
    sandbox = sandboxes(timeout=2)
    with pytest.raises(mexc.SandboxTimeoutError):
        sandbox.wait()
    assert sandbox.returncode == 124


def test_idle_timeout_ends_a_sandbox_with_nothing_running(sandboxes):
    sandbox = sandboxes(idle_timeout=1)
    with pytest.raises(mexc.SandboxTimeoutError):
        sandbox.wait()


def test_exec_timeout_ends_the_stream_and_kills_the_command(sandboxes, tmp_path):
    sandbox = sandboxes()
    process = sandbox.exec("sh", "-c", "echo start; sleep 30; echo never", timeout=1, bufsize=1)
    assert list(process.stdout) == ["start\n"]
    assert process.wait() == -1    # the client's documented answer to an exec timeout
    # The command is gone too (the emulator kills it at its own deadline).
    assert run(sandbox, "sh", "-c", "ps -eo args | grep -c '[s]leep 30' || true")[1].strip() == "0"


def test_entrypoint_exit_code_ends_the_sandbox(sandboxes):
    sandbox = sandboxes("sh", "-c", "exit 3")
    sandbox.wait()
    assert sandbox.returncode == 3


def test_terminate_kills_every_process_of_a_running_exec(sandboxes):
    marker = f"sleep {300 + uuid.uuid4().int % 1000}"
    sandbox = sandboxes()
    process = sandbox.exec("sh", "-c", f"{marker} & echo started; wait", bufsize=1)
    assert next(iter(process.stdout)) == "started\n"
    assert _host_processes(marker), "the child runs on the host, in the jail"
    sandbox.terminate()
    sandbox.wait(raise_on_termination=False)
    assert not _host_processes(marker)


def _host_processes(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return out.split()


def network_probe(emulator) -> tuple[str, list[str]]:
    """Code that tries the emulator's admin port on every host address, and the internet."""
    from agent_sandbox.isolation import netjail

    port = int(emulator.http_url.rsplit(":", 1)[1])
    targets = [(ip.split("/")[0], port) for ip in ["127.0.0.1", *netjail.host_addresses()]] + [("pypi.org", 443)]
    code = ("import socket\n"
            f"for host, port in {targets!r}:\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=5).close(); print('open', host)\n"
            "    except OSError:\n"
            "        print('blocked', host)\n")
    return code, [host for host, _ in targets]


def test_block_network_is_honoured_and_an_open_one_never_reaches_the_host(sandboxes, emulator):
    code, hosts = network_probe(emulator)
    blocked = run(sandboxes(block_network=True), "python", "-c", code)[1].split("\n")
    assert [line for line in blocked if line] == [f"blocked {h}" for h in hosts]
    opened = run(sandboxes(), "python", "-c", code)[1].split("\n")
    assert [line for line in opened if line] == [f"blocked {h}" for h in hosts[:-1]] + ["open pypi.org"]


def test_environment_is_like_a_modal_container(sandboxes):
    sandbox = sandboxes(secrets=[modal.Secret.from_dict({"SANDBOX_SECRET": "in-env"})], workdir="/tmp")
    code, out, _ = run(sandbox, "sh", "-c", "echo $MODAL_TASK_ID $MODAL_IMAGE_ID $SANDBOX_SECRET; pwd; "
                                            "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'")
    ids, cwd, pid1, processes = out.splitlines()
    task, image, secret = ids.split()
    assert code == 0 and task.startswith("ta-") and image.startswith("im-")
    assert secret == "in-env" and cwd == "/tmp"
    # The command is PID 1 of its jail: no bubblewrap process there whose memory holds the environment.
    assert pid1.startswith("sh -c echo $MODAL_TASK_ID")
    assert int(processes) <= 3   # sh and the two commands of its pipe


def test_large_mount_file_and_multi_block_volume_file(sandboxes, tmp_path):
    data = os.urandom(9 * 1024 * 1024)   # > 4 MiB: uploaded as a blob; > 8 MiB: two volume blocks
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "big.bin").write_bytes(data)
    image = modal.Image.debian_slim().add_local_dir(str(tmp_path / "ws"), "/workspace")
    with modal.Volume.ephemeral() as volume:
        sandbox = sandboxes(image=image, volumes={"/outputs": volume})
        code, out, _ = run(sandbox, "sh", "-c", "sha256sum /workspace/big.bin; cp /workspace/big.bin /outputs/")
        assert code == 0 and out.split()[0] == hashlib.sha256(data).hexdigest()
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        assert b"".join(volume.read_file("big.bin")) == data


def test_missing_pip_package_fails_the_image_build(app):
    image = modal.Image.debian_slim().pip_install("no-such-package-for-the-emulator")
    with pytest.raises(mexc.ImageBuildError, match="no-such-package-for-the-emulator"):
        modal.Sandbox.create(app=app, image=image)


def test_injected_faults_map_to_the_clients_exceptions(app, image, emulator):
    emulator.inject("SandboxCreateV2", "RESOURCE_EXHAUSTED")
    with pytest.raises(mexc.ResourceExhaustedError):
        modal.Sandbox.create(app=app, image=image)
    emulator.inject("ImageGetOrCreate", kind="build_failure")
    with pytest.raises(mexc.ImageBuildError):
        modal.Sandbox.create(app=app, image=modal.Image.debian_slim().pip_install("pandas"))
    # UNAVAILABLE is transient: the client itself retries it (up to 3 times) and succeeds.
    fired = emulator.state()["faults_fired"].get("SandboxCreateV2", 0)
    emulator.inject("SandboxCreateV2", "UNAVAILABLE", count=2)
    sandbox = modal.Sandbox.create(app=app, image=image)
    sandbox.terminate()
    assert emulator.state()["faults_fired"]["SandboxCreateV2"] == fired + 2
    assert emulator.state()["faults"] == []


def test_unimplemented_rpcs_fail_at_once(emulator):
    with pytest.raises(mexc.UnimplementedError):
        with modal.Queue.ephemeral():
            pass


def test_list_by_app_and_tags_shows_running_sandboxes_only(sandboxes, app):
    tag = uuid.uuid4().hex
    first, second = sandboxes(tags={"t": tag, "n": "1"}), sandboxes(tags={"t": tag, "n": "2"})
    found = {sb.object_id for sb in modal.Sandbox.list(app_id=app.app_id, tags={"t": tag})}
    assert found == {first.object_id, second.object_id}
    second.terminate()
    second.wait(raise_on_termination=False)
    assert [sb.object_id for sb in modal.Sandbox.list(app_id=app.app_id, tags={"t": tag})] == [first.object_id]
    assert list(modal.Sandbox.list(app_id=app.app_id, tags={"t": tag, "n": "2"})) == []


def test_secrets_are_not_logged(sandboxes, emulator):
    secret = f"sk-log-{uuid.uuid4().hex}"
    sandbox = sandboxes(secrets=[modal.Secret.from_dict({"API_KEY": secret})])
    run(sandbox, "true", secrets=[modal.Secret.from_dict({"OTHER_KEY": secret})])
    assert "SandboxCreateV2" in emulator.log_text()   # the log is verbose: every RPC
    assert secret not in emulator.log_text()
    assert emulator.env()["MODAL_TOKEN_SECRET"] not in emulator.log_text()   # nor the client's token


def test_fault_spec_from_the_command_line():
    from modal_emulator.faults import BUILD_FAILURE, parse_faults

    faults = parse_faults("SandboxCreateV2:UNAVAILABLE:2, ImageGetOrCreate:build_failure ,AppGetOrCreate")
    assert [(f.rpc, f.kind, f.status, f.count) for f in faults] == [
        ("SandboxCreateV2", "grpc_error", "UNAVAILABLE", 2),
        ("ImageGetOrCreate", BUILD_FAILURE, "UNAVAILABLE", 1),
        ("AppGetOrCreate", "grpc_error", "UNAVAILABLE", 1)]
    with pytest.raises(ValueError, match="NO_SUCH_STATUS"):
        parse_faults("SandboxCreateV2:NO_SUCH_STATUS")


def test_bad_admin_requests_are_refused_plainly(emulator):
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as error:
        emulator.admin("POST", "/emulator/faults", {"rpc": "SandboxCreateV2", "status": "NOPE"})
    assert error.value.code == 400
    assert emulator.state()["faults"] == []


def test_long_running_emulator_lets_go_of_old_state(tmp_path):
    import time
    from types import SimpleNamespace

    from modal_emulator.state import EmulatorState

    state = EmulatorState(tmp_path)
    now = time.monotonic()
    for sandbox_id, ended_at in (("sb-old", now - 700), ("sb-recent", now - 10), ("sb-running", None)):
        sb = SimpleNamespace(sandbox_id=sandbox_id, task_id="ta-" + sandbox_id, ended_at=ended_at)
        state.sandboxes[sandbox_id], state.by_task[sb.task_id] = sb, sb
    assert state.forget_ended(600) == ["sb-old"]
    assert set(state.sandboxes) == {"sb-recent", "sb-running"} and "ta-sb-old" not in state.by_task

    silent = state.volumes.get_or_create("", ephemeral=True, create=True)
    beating = state.volumes.get_or_create("", ephemeral=True, create=True)
    named = state.volumes.get_or_create("kept", ephemeral=False, create=True)
    silent.last_heartbeat = now - 1000
    named.last_heartbeat = now - 1000
    assert state.volumes.expire_ephemeral(900) == [silent.volume_id]
    assert not silent.root.exists() and beating.root.exists() and named.root.exists()


def test_exec_stdin_lines_reach_the_process_in_order(sandboxes):
    sandbox = sandboxes()
    process = sandbox.exec("python", "-c", "import sys\nfor line in sys.stdin: print('got', line.strip(), flush=True)",
                           bufsize=1)
    lines = iter(process.stdout)
    for word in ("one", "two", "three"):   # one write and drain per line, answered before the next
        process.stdin.write(f"{word}\n")
        process.stdin.drain()
        assert next(lines).strip() == f"got {word}"
    process.stdin.write_eof()
    process.stdin.drain()
    assert process.wait() == 0


def test_exec_stdin_write_is_taken_once_when_its_reply_is_lost(sandboxes, emulator):
    """The client retries a write whose reply was lost, with the same offset: the
    emulator skips what it already has, as Modal's worker does."""
    sandbox = sandboxes()
    process = sandbox.exec("cat")
    emulator.inject("TaskExecStdinWrite", "UNAVAILABLE", count=1, kind="lost_reply")
    process.stdin.write("abc\n")
    process.stdin.drain()
    process.stdin.write("def\n")
    process.stdin.write_eof()
    process.stdin.drain()
    assert process.stdout.read() == "abc\ndef\n"
    assert process.wait() == 0


def test_exec_stdin_write_stream(sandboxes):
    """The streaming stdin RPC (start, data chunks, end), through the client's own code."""
    import asyncio
    import io

    from modal._utils.async_utils import synchronizer

    sandbox = sandboxes()
    process = sandbox.exec("sh", "-c", "wc -c")
    data = os.urandom(300_000)
    stream = synchronizer._translate_in(process)._stdin_write_stream(io.BytesIO(data))
    sent = asyncio.run_coroutine_threadsafe(stream, synchronizer._get_loop(start=True)).result(60)
    assert sent == len(data)
    assert process.stdout.read().strip() == str(len(data))


def test_a_volume_path_through_a_symlink_is_not_served(sandboxes, emulator):
    """A sandbox that leaves `esc -> /etc` in a volume must not get host files back
    through the volume API (`esc/passwd`), from the client or over HTTP."""
    import urllib.error
    import urllib.request

    with modal.Volume.ephemeral() as volume:
        sandbox = sandboxes(volumes={"/outputs": volume})
        run(sandbox, "sh", "-c", "ln -s /etc /outputs/esc")
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        with pytest.raises(FileNotFoundError):
            b"".join(volume.read_file("esc/passwd"))
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{emulator.http_url}/volumes/{volume.object_id}/blocks/0/esc/passwd", timeout=10)
        assert error.value.code == 404



def test_hard_limits_come_only_from_the_limit_fields(sandboxes, emulator):
    """A bare cpu/memory is a request on Modal (the sandbox may use more); (request, limit)
    sets a hard limit. The emulator must hold a sandbox to no less, and to no more."""
    own_memory = emulator.state()["sandbox_limits"]["memory_mb"]
    assert cgroup_limits(sandboxes(cpu=0.25, memory=256)) == (0.0, own_memory)
    assert cgroup_limits(sandboxes(cpu=(0.25, 0.5), memory=(256, 300))) == (0.5, 300)


def test_a_retry_of_a_call_that_took_effect_gets_the_same_answer(app, image, emulator):
    """The client keeps its idempotency key across its own retries: a creation whose
    answer was lost and that the client retries must not make a second sandbox."""
    tag = uuid.uuid4().hex
    emulator.inject("SandboxCreateV2", "UNAVAILABLE", kind="lost_reply")   # took effect; the client retries
    sandbox = modal.Sandbox.create(app=app, image=image, timeout=60, tags={"t": tag})
    try:
        found = [sb.object_id for sb in modal.Sandbox.list(app_id=app.app_id, tags={"t": tag})]
        assert found == [sandbox.object_id]
    finally:
        sandbox.terminate()


def test_rate_limits_carry_the_retry_policy_the_client_waits_by(app, image, emulator, monkeypatch):
    import time

    emulator.set_create_rate(0.5)   # a creation every 2 s
    try:
        first = modal.Sandbox.create(app=app, image=image, timeout=60)
        started = time.monotonic()
        second = modal.Sandbox.create(app=app, image=image, timeout=60)   # throttled: the client waits
        waited = time.monotonic() - started
        for sandbox in (first, second):
            sandbox.terminate()
        assert 1.0 < waited < 10
        monkeypatch.setenv("MODAL_MAX_THROTTLE_WAIT", "1")   # the cap gives up before the wait is over
        started = time.monotonic()
        with pytest.raises(mexc.ResourceExhaustedError, match="rate limit"):
            modal.Sandbox.create(app=app, image=image, timeout=60)
        assert time.monotonic() - started < 1.5
    finally:
        emulator.set_create_rate(0)


def test_no_variables_a_modal_container_would_not_have(sandboxes):
    """Only what Modal's docs say every container has (and HOME, PATH, LANG from the image):
    code that works here only thanks to a variable Modal does not set must fail here too."""
    names = set(run(sandboxes(), "sh", "-c", "env | cut -d= -f1")[1].split())
    assert {"MODAL_TASK_ID", "MODAL_IMAGE_ID", "MODAL_REGION", "MODAL_CLOUD_PROVIDER", "HOME", "PATH"} <= names
    assert not names & {"PYTHONPATH", "PYTHONUNBUFFERED", "MODAL_ENVIRONMENT"}


# -- where Modal's timing and failures are not ours to choose ------------------------------------

def test_a_sandbox_waits_to_be_scheduled_and_ends_at_once_if_terminated_meanwhile(sandboxes, emulator):
    import time

    with emulator.behaving(schedule_delay=3):
        started = time.monotonic()
        sandbox = sandboxes()
        assert time.monotonic() - started < 2, "create answers before a worker is found"
        assert run(sandbox, "echo", "scheduled")[1] == "scheduled\n"
        assert time.monotonic() - started >= 3, "an exec waits for the sandbox to be scheduled"
        waiting = sandboxes()
        ended = time.monotonic()
        waiting.terminate()
        waiting.wait(raise_on_termination=False)
        assert waiting.returncode == 137 and time.monotonic() - ended < 2
        with pytest.raises((mexc.NotFoundError, mexc.ConflictError)):
            waiting.exec("true")


def test_a_volume_may_sync_after_its_sandbox_ended(sandboxes, emulator):
    import time

    with emulator.behaving(commit_delay=2), modal.Volume.ephemeral(version=2) as volume:
        sandbox = sandboxes(volumes={"/outputs": volume})
        assert run(sandbox, "sh", "-c", "echo hi > /outputs/a.txt")[0] == 0
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        assert list(volume.listdir("/")) == [], "ended, not yet in sync"
        deadline = time.monotonic() + 10
        while not list(volume.listdir("/")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [e.path for e in volume.listdir("/")] == ["a.txt"]


def test_reads_of_chosen_files_fail_as_modal_reports_them(sandboxes, emulator):
    with emulator.behaving(fail_read="*broken*"), modal.Volume.ephemeral(version=2) as volume:
        sandbox = sandboxes(volumes={"/outputs": volume})
        run(sandbox, "sh", "-c", "echo ok > /outputs/good.txt; echo no > /outputs/broken.txt")
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        assert b"".join(volume.read_file("good.txt")) == b"ok\n"
        with pytest.raises(mexc.ExecutionError, match="500"):
            b"".join(volume.read_file("broken.txt"))


def test_file_names_with_url_characters_are_served(sandboxes):
    names = ["what?.txt", "a#b.txt", "100%.txt", "two words.txt", "%41.txt"]
    with modal.Volume.ephemeral(version=2) as volume:
        sandbox = sandboxes(volumes={"/outputs": volume})
        script = "; ".join(f"printf '{i}' > '/outputs/{name}'" for i, name in enumerate(names))
        assert run(sandbox, "sh", "-c", script)[0] == 0
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        assert [b"".join(volume.read_file(name)) for name in names] == [str(i).encode() for i in range(len(names))]


MEMORY_HOG = "import time; hog = bytearray(600 << 20); hog[::4096] = b'x' * len(hog[::4096]); time.sleep(30)"


def test_running_out_of_memory_ends_the_whole_sandbox(sandboxes):
    """As gVisor does on Modal: not only the greedy process dies, everything does."""
    import time

    sandbox = sandboxes(memory=(256, 256))
    bystander = sandbox.exec("sleep", "60")
    started = time.monotonic()
    sandbox.exec("python3", "-c", MEMORY_HOG)
    sandbox.wait(raise_on_termination=False)
    assert sandbox.returncode == 137 and time.monotonic() - started < 20
    with pytest.raises(mexc.NotFoundError, match="ended with its sandbox"):
        bystander.poll()   # the bystander went with it
    with pytest.raises(mexc.NotFoundError):
        sandbox.exec("true")
