"""The Modal backend beyond the conformance suite: settings, error mapping,
creation retries, orphan sweep, secrets. Real `modal` client, our emulator;
failures are injected in the emulator, never mocked in the client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid

import modal
import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.backends.modal import JOB_TAG, OWNER_TAG, PROCESS_TAG, ModalBackend, ModalConfig
from agent_sandbox.isolation.owners import this_process
from agent_sandbox.relay.host import ModelAccess
from agent_sandbox.spec import Limits
from tests.conftest import REPO, make_spec
from tests.modal_support import fast_retrying_backend, shared_emulator

TRIVIAL = [{"kind": "shell", "command": "echo hello"}]


@pytest.fixture(scope="module")
def emulator():
    return shared_emulator()


@pytest.fixture
def backend(emulator):
    yield from fast_retrying_backend(emulator)


def sandbox_of(emulator, job_id: str) -> dict:
    [sandbox] = [sb for sb in emulator.state()["sandboxes"] if sb["tags"].get(JOB_TAG) == job_id]
    return sandbox


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AGENT_SANDBOX_MODAL_APP_NAME", "lab-jobs")
    monkeypatch.setenv("AGENT_SANDBOX_MODAL_EXTRA_PACKAGES", "scipy, seaborn")
    monkeypatch.setenv("AGENT_SANDBOX_MODAL_TIMEOUT_MARGIN", "15")
    monkeypatch.setenv("AGENT_SANDBOX_MODAL_CREATE_ATTEMPTS", "2")
    config = get_backend("modal").config
    assert (config.app_name, config.extra_packages, config.timeout_margin, config.create_attempts) == (
        "lab-jobs", ["scipy", "seaborn"], 15.0, 2)
    assert get_backend("modal", app_name="explicit").config.app_name == "explicit"
    with pytest.raises(TypeError, match="no_such_setting"):
        ModalConfig.from_env(no_such_setting=1)


def test_runs_in_the_configured_app_tagged_and_reports_modal(emulator, tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("AGENT_SANDBOX_MODAL_APP_NAME", "configured-app")
    spec = make_spec(tmp_path, TRIVIAL)
    backend = get_backend("modal")
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    sandbox = sandbox_of(emulator, spec.job_id)
    assert sandbox["app_id"] == emulator.state()["apps"]["configured-app"]
    assert sandbox["tags"][OWNER_TAG] == backend.config.owner and sandbox["status"] == "TERMINATED"
    assert sandbox["volumes"]["/outputs"]["version"] == 2   # asked for: Modal's default is still v1
    started = recorder.of_type(ev.RUN_STARTED)[0]["data"]
    assert started["environment"] == "modal" and started["modal_task_id"].startswith("ta-")


def test_network_blocked_for_every_model_and_fenced_with_the_opt_in(emulator, tmp_path, recorder):
    no_retries = Limits(run_timeout=120, command_timeout=60, idle_timeout=60, disk_mb=1024, model_retries=0)
    llm = make_spec(tmp_path / "a", TRIVIAL, model="openai:gpt-test", limits=no_retries,
                    model_access=ModelAccess("openai", "gpt-test", "http://127.0.0.1:9", ""))
    opted = make_spec(tmp_path / "b", TRIVIAL, network=True)
    listed = make_spec(tmp_path / "c", TRIVIAL, network=True)
    ModalBackend().run(llm, recorder)   # the model is unreachable here: only the network matters
    assert ModalBackend().run(opted, recorder).ok
    assert ModalBackend(outbound_domains=["pypi.org"]).run(listed, recorder).ok
    assert sandbox_of(emulator, llm.job_id)["network"] == "blocked"   # model calls go through the relay
    public = sandbox_of(emulator, opted.job_id)["network"]   # the internet, never private ranges
    assert public.startswith("allowlist:") and "8.0.0.0/7" in public and "10.0.0.0/8" not in public
    assert sandbox_of(emulator, listed.job_id)["network"] == "allowlist:pypi.org"


def test_cpu_and_memory_are_hard_limits_not_requests(backend, tmp_path, recorder):
    # A bare number is a request on Modal, which a sandbox may exceed: the backend passes
    # (request, limit), and the emulator sets a hard limit only from the limit.
    from tests.modal_support import CGROUP_LIMITS

    limits = Limits(run_timeout=120, command_timeout=60, idle_timeout=60, cpu=0.5, memory_mb=300, disk_mb=1024)
    spec = make_spec(tmp_path, [{"kind": "shell", "command": CGROUP_LIMITS}], limits=limits)
    assert backend.run(spec, recorder).ok
    text = "".join(e["data"]["text"] for e in recorder.of_type(ev.OUTPUT))
    assert " 50000\n" in text and f" {300 * 1024 * 1024}\n" in text   # CPU quota per 100 ms period; bytes


def test_files_the_agent_left_but_the_volume_lost_are_reported(backend, emulator, tmp_path, recorder, caplog):
    emulator.inject("VolumeCommit", kind="skipped_commit")   # the sandbox ends; its volume never syncs
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo a > /outputs/a.txt; echo b > /outputs/b.txt"}])
    never_synced = ModalBackend(retry_delay=0.01, create_attempts=3, sync_wait=2)   # not the default minute
    with caplog.at_level("WARNING", logger="agent_sandbox.backends.monitor"):
        result = never_synced.run(spec, recorder)
    assert result.status == ev.SUCCEEDED and result.manifest["files"] == []
    assert recorder.of_type(ev.RUN_FINISHED)[0]["data"]["output_files"] == 2
    [warning] = [e["data"]["message"] for e in recorder.of_type(ev.WARNING) if "lost" in e["data"]["message"]]
    assert "left 2 files in /outputs" in warning
    assert any(spec.job_id in r.getMessage() and "lost" in r.getMessage() for r in caplog.records)


def test_the_image_is_built_once_at_start_up_with_its_log_in_ours(emulator, tmp_path, recorder, caplog):
    backend = ModalBackend(extra_packages=["requests"])   # a definition this emulator has not built yet
    with caplog.at_level("INFO", logger="agent_sandbox.backends.modal_image"):
        image_id = backend.prepare()
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("Modal image build: ") and "requests" in line for line in lines), lines
    assert any(image_id in line and "ready" in line for line in lines)
    caplog.clear()
    with caplog.at_level("INFO", logger="agent_sandbox.backends.modal_image"):
        assert backend.run(make_spec(tmp_path, TRIVIAL), recorder).ok
    assert not [r for r in caplog.records if "Modal image build" in r.getMessage()]   # found built


def test_a_failed_image_build_is_in_our_log(emulator, caplog):
    backend = ModalBackend(extra_packages=["no-such-package-for-the-emulator"])
    with caplog.at_level("INFO", logger="agent_sandbox.backends.modal_image"), \
            pytest.raises(modal.exception.ImageBuildError):
        backend.prepare()
    assert any(r.getMessage().startswith("Modal image build: ERROR") and "no-such-package" in r.getMessage()
               for r in caplog.records)


def test_transient_creation_failures_are_retried(backend, emulator, tmp_path, recorder):
    emulator.inject("SandboxCreateV2", "RESOURCE_EXHAUSTED", count=2)
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    warnings = [e["data"]["message"] for e in recorder.of_type(ev.WARNING) if "not enforced" not in e["data"]["message"]]
    assert len(warnings) == 2 and all("retrying" in w and "capacity" in w for w in warnings)


def test_unavailable_is_retried_by_the_client_then_by_us(backend, emulator, tmp_path, recorder):
    # The client retries UNAVAILABLE 3 times itself; the 5th failure reaches our retry.
    emulator.inject("SandboxCreateV2", "UNAVAILABLE", count=5)
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert len([e for e in recorder.of_type(ev.WARNING) if "retrying" in e["data"]["message"]]) == 1
    assert emulator.state()["faults"] == []


def test_persistent_creation_failure_ends_with_a_clear_error(backend, emulator, tmp_path, recorder):
    emulator.inject("SandboxCreateV2", "RESOURCE_EXHAUSTED", count=-1)
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.ERROR_STATUS
    assert "after 3 attempts" in result.reason and "out of capacity" in result.reason
    assert recorder.of_type(ev.ERROR)[0]["data"]["message"] == result.reason
    assert recorder.of_type(ev.RESULT)[-1]["data"]["status"] == ev.ERROR_STATUS


def test_invalid_request_is_not_retried(backend, emulator, tmp_path, recorder):
    fired = emulator.state()["faults_fired"].get("SandboxCreateV2", 0)
    emulator.inject("SandboxCreateV2", "INVALID_ARGUMENT", count=3)
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.ERROR_STATUS and "invalid" in result.reason
    assert emulator.state()["faults_fired"]["SandboxCreateV2"] == fired + 1
    assert not recorder.of_type(ev.WARNING)


def test_rejected_credentials_are_not_retried(backend, emulator, tmp_path, recorder):
    emulator.inject("VolumeGetOrCreate", "UNAUTHENTICATED")   # every run's first call (the app is looked up once)
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.ERROR_STATUS and "refused the credentials" in result.reason
    assert not recorder.of_type(ev.WARNING)


def test_oversized_instructions_fail_clearly_and_leave_nothing(backend, emulator, tmp_path, recorder):
    # Modal caps a command line at 64 KiB; the instructions travel on it.
    spec = make_spec(tmp_path, TRIVIAL, instructions="x" * 70_000)
    result = backend.run(spec, recorder)
    assert result.status == ev.ERROR_STATUS
    assert "could not start the agent" in result.reason and "cannot exceed" in result.reason
    assert sandbox_of(emulator, spec.job_id)["status"] == "TERMINATED"


def test_image_build_failure(emulator, tmp_path, recorder):
    backend = ModalBackend(extra_packages=["no-such-package-for-the-emulator"])
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.ERROR_STATUS
    assert "image could not be built" in result.reason and "no-such-package-for-the-emulator" in result.reason


def test_agent_that_cannot_start_ends_the_run_and_the_sandbox(backend, emulator, tmp_path, recorder):
    emulator.inject("TaskExecStart", "NOT_FOUND")
    spec = make_spec(tmp_path, TRIVIAL)
    result = backend.run(spec, recorder)
    assert result.status == ev.ERROR_STATUS and "could not start the agent" in result.reason
    assert sandbox_of(emulator, spec.job_id)["status"] == "TERMINATED"


def test_output_stream_errors_resume_without_losing_events(backend, emulator, tmp_path, recorder):
    emulator.inject("TaskExecStdioRead", "UNAVAILABLE", count=2)
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "seq 1 200"}])
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    seqs = [e["seq"] for e in recorder.events if e["type"] in ev.AGENT_TYPES]
    assert seqs == list(range(1, len(seqs) + 1))   # nothing lost, nothing twice
    text = "".join(e["data"]["text"] for e in recorder.of_type(ev.OUTPUT))
    assert text.split() == [str(i) for i in range(1, 201)]


ENDED_TASK_MODES = ("close", "not_found", "unreachable")


@pytest.fixture(params=ENDED_TASK_MODES)
def ended_task(request, emulator):
    """Run the test in each way the exec stream may behave when Modal ends the sandbox
    (closed cleanly, or failing as a task or worker that is gone): Modal does not say which."""
    emulator.set_ended_task(request.param)
    yield request.param
    emulator.set_ended_task("close")


def test_modals_own_time_limit_is_reported_as_timeout(backend, ended_task, tmp_path, recorder):
    backend.config.timeout_margin = -27   # Modal's limit (3 s) now comes before ours (30 s)
    limits = Limits(run_timeout=30, command_timeout=25, idle_timeout=30)
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo kept > /outputs/a.txt; sleep 20"}],
                     limits=limits)
    result = backend.run(spec, recorder)
    assert result.status == ev.TIMEOUT and "Modal ended the sandbox" in result.reason
    assert (spec.results / "a.txt").read_text() == "kept\n"   # synced at Modal's termination


def test_sandbox_terminated_from_outside_is_an_error_with_partial_outputs(backend, ended_task, tmp_path, recorder):
    def on_event(event):
        recorder(event)
        if event["type"] == ev.OUTPUT and "waiting" in event["data"].get("text", ""):
            # Someone else ends it: an operator, or Modal itself.
            def end_it():
                app = modal.App.lookup(backend.config.app_name)
                for sandbox in modal.Sandbox.list(app_id=app.app_id, tags={JOB_TAG: spec.job_id}):
                    sandbox.terminate()
            threading.Thread(target=end_it).start()

    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo kept > /outputs/a.txt; echo waiting; sleep 30"}])
    result = backend.run(spec, on_event)
    assert result.status == ev.ERROR_STATUS and "terminated outside this run" in result.reason
    assert (spec.results / "a.txt").read_text() == "kept\n"
    # Not process.wait(): with the worker unreachable the client retries it until the
    # exec's deadline (run timeout + margin, 180 s here).
    assert result.duration < 60


def test_a_sandbox_created_behind_a_lost_reply_is_not_left_running(backend, emulator, tmp_path, recorder):
    # Creation took effect but the answer was an error: our retry must not leave that sandbox behind.
    emulator.inject("SandboxCreateV2", "RESOURCE_EXHAUSTED", kind="lost_reply")
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert any("retrying" in e["data"]["message"] for e in recorder.of_type(ev.WARNING))
    assert not emulator.running_sandboxes()


def test_cancel_before_the_sandbox_starts(backend, tmp_path, recorder):
    cancel = threading.Event()
    cancel.set()
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder, cancel)
    assert result.status == ev.CANCELLED
    assert not recorder.of_type(ev.RUN_STARTED)


def test_secrets_stay_out_of_image_logs_and_events(backend, emulator, tmp_path, recorder):
    secret = f"sk-{uuid.uuid4().hex}"
    spec = make_spec(tmp_path, [{"kind": "python", "code": "import os; print(sorted(os.environ))"}],
                     secrets={"ANTHROPIC_API_KEY": secret, "LAB_ACCESS": secret})
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert "MODAL_TASK_ID" in recorder.text()              # the command did print its environment
    assert secret not in recorder.text() and "LAB_ACCESS" not in recorder.text()
    assert secret not in emulator.log_text()
    stored = emulator.folder / "state" / "files"           # everything uploaded for images and mounts
    assert not any(secret.encode() in f.read_bytes() for f in stored.iterdir())


def test_orphan_sweep_terminates_only_this_owners_sandboxes(backend, emulator):
    app = modal.App.lookup(backend.config.app_name, create_if_missing=True)
    image = modal.Image.debian_slim()
    mine = [modal.Sandbox.create(app=app, image=image, timeout=60,
                                 tags={OWNER_TAG: backend.config.owner, JOB_TAG: f"crashed-{i}"})
            for i in range(2)]
    other = modal.Sandbox.create(app=app, image=image, timeout=60,
                                 tags={OWNER_TAG: "another-host", JOB_TAG: "theirs"})
    # A live process of ours (a CLI run, another web app) still owns this one.
    live = modal.Sandbox.create(app=app, image=image, timeout=60,
                                tags={OWNER_TAG: backend.config.owner, JOB_TAG: "running",
                                      PROCESS_TAG: this_process()})
    try:
        assert backend.sweep_orphans() == 2
        for sandbox in mine:
            sandbox.wait(raise_on_termination=False)
            assert sandbox.returncode == 137
        assert other.poll() is None and live.poll() is None
        assert backend.sweep_orphans() == 0
    finally:
        for sandbox in (other, live):
            sandbox.terminate()
            sandbox.wait(raise_on_termination=False)


def test_a_sandbox_is_ended_by_its_id_without_listing(backend, emulator):
    """What recovery does with the id stored with a job: no tags, no listing needed
    (Modal does not list V2 sandboxes)."""
    app = modal.App.lookup(backend.config.app_name, create_if_missing=True)
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60)   # untagged
    try:
        assert backend.sweep_orphans() == 0, "a sandbox without our tags is not the sweep's"
        assert backend.end_sandbox(sandbox.object_id) is True
        sandbox.wait(raise_on_termination=False)
        assert sandbox.returncode == 137
        assert backend.end_sandbox(sandbox.object_id) is False, "already ended"
        assert backend.end_sandbox("sb-no-such-sandbox") is False
    finally:
        sandbox.terminate()


def test_a_cli_run_that_could_not_start_the_agent_says_so_in_its_folder(emulator, tmp_path):
    """Its manifest said "running" (with the sandbox id) once the sandbox existed; it ends saying
    how the run ended, not still "running"."""
    data = tmp_path / "d.csv"
    data.write_text("x\n")
    emulator.inject("TaskExecStart", "NOT_FOUND")
    try:
        proc = subprocess.run([sys.executable, "-m", "agent_sandbox", "run", "--backend", "modal", "--model",
                               "scripted", "--output", str(tmp_path / "out"), str(data)], cwd=REPO,
                              env={**os.environ, "AGENT_SCRIPT": json.dumps(TRIVIAL)},
                              capture_output=True, text=True, timeout=120)
    finally:
        emulator.clear_faults()
    assert proc.returncode == 1 and "could not start the agent" in proc.stderr
    run = json.loads((tmp_path / "out" / "manifest.json").read_text())["run"]
    assert run["status"] == "error" and run["backend"] == "modal" and run["sandbox_id"].startswith("sb-")
    assert "could not start the agent" in run["reason"]


def test_lost_connection_is_an_error_not_a_crash(tmp_path):
    # A server that accepts connections and drops them: the client gives up
    # after its own retries and the backend reports it plainly.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def drop_all() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    script = (
        "import json, pathlib, sys\n"
        "from agent_sandbox.backends import get_backend\n"
        "from tests.conftest import make_spec\n"
        "spec = make_spec(pathlib.Path(sys.argv[1]), [])\n"
        "backend = get_backend('modal')\n"
        "swept = backend.sweep_orphans()\n"
        "r = backend.run(spec, lambda e: None)\n"
        "print(json.dumps({'status': r.status, 'reason': r.reason, 'swept': swept}))\n")
    env = {**os.environ, "MODAL_SERVER_URL": f"http://127.0.0.1:{server.getsockname()[1]}",
           "AGENT_SANDBOX_MODAL_CREATE_ATTEMPTS": "2", "AGENT_SANDBOX_MODAL_RETRY_DELAY": "0.01"}
    try:
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == ev.ERROR_STATUS
    assert "could not reach Modal" in result["reason"]
    assert result["swept"] == 0 and "orphan sweep incomplete" in out.stderr   # logged, not raised


def test_concurrent_jobs_stay_apart(emulator, tmp_path):
    # The web app runs several jobs at once through one backend (and one client).
    backend = ModalBackend()
    jobs = {}
    for name in ("alpha", "beta", "gamma"):
        spec = make_spec(tmp_path / name, [{"kind": "shell",
                                            "command": f"sleep 1; echo {name} > /outputs/who.txt; echo {name}"}])
        jobs[name] = (spec, [], {})

    def run(name):
        spec, events, result = jobs[name]
        result["r"] = backend.run(spec, events.append)

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name, (spec, events, result) in jobs.items():
        assert result["r"].status == ev.SUCCEEDED, result["r"].reason
        assert (spec.results / "who.txt").read_text() == f"{name}\n"
        printed = {e["data"]["text"].strip() for e in events if e["type"] == ev.OUTPUT}
        assert printed == {name}


def test_creation_rate_limit_is_absorbed(emulator, tmp_path):
    # Modal rate-limits sandbox creation and says how long to wait: a burst of jobs must all start.
    backend = ModalBackend(retry_delay=0.3, create_attempts=6)
    specs = [make_spec(tmp_path / str(i), TRIVIAL) for i in range(4)]
    events: list[dict] = []
    results = [None] * len(specs)

    def run(i):
        results[i] = backend.run(specs[i], events.append)

    emulator.set_create_rate(2)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        emulator.set_create_rate(0)
    assert [r.status for r in results] == [ev.SUCCEEDED] * len(specs)


@pytest.fixture
def throttled(emulator, app_for):
    """Creation throttled hard: the next sandbox may be created only in 5 s (the emulator
    says so in Modal's retry policy, which the client waits out by itself)."""
    emulator.set_create_rate(0.2)
    first = modal.Sandbox.create(app=app_for(), image=modal.Image.debian_slim(), timeout=30)   # takes the token
    first.terminate()
    yield
    emulator.set_create_rate(0)


@pytest.fixture
def app_for():
    return lambda: modal.App.lookup(ModalConfig.from_env().app_name, create_if_missing=True)


def test_the_client_gives_up_on_rate_limits_at_our_cap(throttled, emulator, tmp_path, recorder, monkeypatch):
    # Uncapped, the client would wait out every rate limit itself, deaf to cancel and timeouts.
    monkeypatch.delenv("MODAL_MAX_THROTTLE_WAIT", raising=False)
    backend = ModalBackend(max_throttle_wait=1, retry_delay=0.01, create_attempts=2)
    assert os.environ["MODAL_MAX_THROTTLE_WAIT"] == "1"
    result = backend.run(make_spec(tmp_path, TRIVIAL), recorder)
    assert result.status == ev.ERROR_STATUS and "rate limiting" in result.reason
    assert result.duration < 4   # not the 5 s the server asked for


def test_a_long_creation_is_not_the_agents_idleness(throttled, tmp_path, recorder):
    # The client waits 5 s to create the sandbox; the agent may be silent 2 s once it runs.
    limits = Limits(run_timeout=120, command_timeout=60, idle_timeout=2, disk_mb=1024)
    result = ModalBackend().run(make_spec(tmp_path, TRIVIAL, limits=limits), recorder)
    assert result.status == ev.SUCCEEDED, result.reason


@pytest.mark.parametrize("stop", ["cancel", "run_timeout"])
def test_cancel_and_the_run_timeout_act_while_creation_waits(throttled, emulator, tmp_path, recorder, stop):
    import time

    backend = ModalBackend()   # the client waits out the 5 s itself, within the cap
    cancel = threading.Event()
    limits = Limits(run_timeout=1 if stop == "run_timeout" else 120, command_timeout=60, idle_timeout=60,
                    disk_mb=1024)
    spec = make_spec(tmp_path, TRIVIAL, limits=limits)
    if stop == "cancel":
        threading.Timer(1, cancel.set).start()
    result = backend.run(spec, recorder, cancel)
    assert result.status == (ev.CANCELLED if stop == "cancel" else ev.TIMEOUT)
    assert result.duration < 4
    def statuses() -> list[str]:
        return [sb["status"] for sb in emulator.state()["sandboxes"] if sb["tags"].get(JOB_TAG) == spec.job_id]

    deadline = time.monotonic() + 20   # the sandbox Modal makes after all is ended, not left running
    while time.monotonic() < deadline and statuses() != ["TERMINATED"]:
        time.sleep(0.2)
    assert statuses() == ["TERMINATED"]
