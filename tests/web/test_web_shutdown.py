"""Stopping the server leaves no sandbox running, on every backend (issue 15).

A real server process with the real backend: the local bubblewrap jail,
Docker, and Modal through our emulator in both its runtimes (bubblewrap
jails, Docker containers). What is alive is found the way the kernel or the
engine groups it: a jail by its cgroup (the run's sandbox id) and PID
namespace, a container by its labels, an emulator sandbox by its tags in the
emulator's state and then by its cgroup or container.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from web_helpers import wait_finished

from frontend.executor import STAYS_QUEUED
from frontend.store import JobStore
from tests.leftovers import container_named, containers, in_cgroup, in_namespaces, pid_namespaces, wait_until

SLEEPER = [{"kind": "shell", "command": "echo started; sleep 30"}]
TAIL = [{"kind": "shell", "command": "sleep 3; echo tail done"}]
LONG = [{"kind": "shell", "command": "echo started; sleep 300"}]
BACKENDS = ["local", "docker", "modal-bwrap", "modal-docker"]


def processes_of_run(label: str) -> list[int]:
    """Live processes in a run cgroup whose name holds this label (a job or sandbox id)."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and "/agent-sandbox/" in cgroups and f"-{label[:40]}-" in cgroups:
            found.append(pid)
    return found


class Probe:
    """One backend as the web app runs it: the server's settings, and what of a job is alive."""

    def __init__(self, kind: str, emulator=None):
        self.kind, self.emulator = kind, emulator
        self.backend = kind.partition("-")[0]
        self.env = {"APP_BACKENDS": f"local,{self.backend}" if self.backend != "local" else "local"}
        if emulator is not None:
            self.env.update(emulator.env())

    def alive(self, store: JobStore, job_ids: list[str]) -> list[str]:
        """What of these jobs' sandboxes still runs, described; [] when nothing does."""
        found = []
        sandbox_ids = {job_id: store.get_job(job_id)["sandbox_id"] for job_id in job_ids}
        for job_id in job_ids:
            if self.backend == "local" and (pids := processes_of_run(job_id)):
                found.append(f"job {job_id}: processes {pids}")
            if self.backend == "docker" and (ids := containers(f"agent-sandbox.job={job_id}")):
                found.append(f"job {job_id}: containers {ids}")
        if self.emulator is not None:
            for sandbox in self.emulator.state()["sandboxes"]:
                job_id = sandbox["tags"].get("agent_sandbox_job")
                if job_id in sandbox_ids and sandbox["running"]:
                    found.append(f"job {job_id}: emulator sandbox {sandbox['sandbox_id']} running")
            for job_id, sandbox_id in sandbox_ids.items():
                if not sandbox_id:
                    continue
                if self.kind == "modal-bwrap" and (pids := processes_of_run(sandbox_id)):
                    found.append(f"job {job_id}: emulator jail processes {pids}")
                if self.kind == "modal-docker" and container_named(f"modal-emulator-{sandbox_id}"):
                    found.append(f"job {job_id}: emulator container modal-emulator-{sandbox_id}")
        return found


@pytest.fixture(scope="module")
def emulators():
    """A Modal emulator per runtime, started when first needed (the servers are other processes)."""
    from tests.modal_support import EmulatorProcess
    started: dict[str, EmulatorProcess] = {}

    def get(runtime: str) -> EmulatorProcess:
        if runtime not in started:
            started[runtime] = EmulatorProcess(runtime=runtime)
        return started[runtime]

    yield get
    for emulator in started.values():
        emulator.stop()


@pytest.fixture(params=BACKENDS)
def probe(request, emulators) -> Probe:
    kind = request.param
    if kind == "docker":
        from tests.docker_engine import require_docker
        require_docker()
    if kind.startswith("modal"):
        runtime = kind.partition("-")[2]
        if runtime == "docker":
            from tests.modal_support import require_docker_runtime
            require_docker_runtime()
        return Probe(kind, emulators(runtime))
    return Probe(kind)


def events_of(store: JobStore, job_id: str) -> list[dict]:
    return list(store.iter_events(job_id))


def test_sigterm_with_a_full_queue_starts_nothing_more_and_leaves_nothing(start_server, probe):
    server = start_server(APP_WORKERS=2, APP_MAX_ACTIVE_PER_OWNER=40, **probe.env)
    c = server.client()
    sleepers = [c.submit(SLEEPER, backend=probe.backend).json()["id"] for _ in range(20)]
    tail = [c.submit(TAIL, backend=probe.backend).json()["id"] for _ in range(4)]
    for job_id in sleepers[:2]:
        c.wait_for_event(job_id, lambda f: f["event"] == "output", timeout=120)

    # Cancel all 20 through the API; SIGTERM half way: the rest arrive while the server stops.
    answers: dict[str, int | None] = {}
    for n, job_id in enumerate(sleepers):
        if n == 10:
            server.proc.send_signal(signal.SIGTERM)
        try:
            answers[job_id] = c.post(f"/api/jobs/{job_id}/cancel", timeout=30).status_code
        except requests.ConnectionError:
            answers[job_id] = None   # the server had stopped listening
    assert server.proc.wait(timeout=90) == 0
    store = JobStore(server.root / "outputs" / "jobs.sqlite3")

    assert probe.alive(store, sleepers + tail) == [], "no sandbox outlives the server"
    jobs = {job_id: store.get_job(job_id) for job_id in sleepers + tail}
    assert not [j for j in jobs.values() if j["status"] == "running"]
    for job_id in sleepers:   # every cancel the server answered was honoured, during shutdown too
        expected = {202: "cancelled", None: "queued"}.get(answers[job_id], "cancelled")
        assert jobs[job_id]["status"] == expected, (job_id, answers[job_id], jobs[job_id]["reason"])
    assert answers[sleepers[10]] == 202, "the server still answers while it stops its jobs"
    # A tail job ran only if a worker took it before the signal; the others stay queued, and say so.
    queued = [j for j in tail if jobs[j]["status"] == "queued"]
    assert len(queued) >= 2 and all(jobs[j]["status"] in ("queued", "interrupted") for j in tail)
    for job_id in queued:
        last = events_of(store, job_id)[-1]
        assert last["type"] == "status" and last["data"] == {"status": "queued", "message": STAYS_QUEUED}
    # Once stopping began, no agent started anywhere.
    stopping = min(e["ts"] for j in queued for e in events_of(store, j) if e["data"].get("message") == STAYS_QUEUED)
    late = [j for j in jobs for e in events_of(store, j) if e["type"] == "run_started" and e["ts"] > stopping]
    assert late == [], "a sandbox started after the server began to stop"

    again = server.restart_on_same_data()
    start_server.track(again)
    c.base = again.base
    for job_id in [j for j in sleepers if jobs[j]["status"] == "queued"]:
        c.post(f"/api/jobs/{job_id}/cancel")   # never reached the stopping server: cancel it now
    for job_id in queued:
        assert wait_finished(c, job_id, timeout=180)["status"] == "succeeded", "queued jobs run after a restart"
    assert probe.alive(store, sleepers + tail) == []


def test_sigkill_during_a_running_job_is_ended_by_the_next_start(start_server, probe):
    server = start_server(APP_WORKERS=1, **probe.env)
    c = server.client()
    job_id = c.submit(LONG, backend=probe.backend).json()["id"]
    c.wait_for_event(job_id, lambda f: f["event"] == "output", timeout=120)
    store = JobStore(server.root / "outputs" / "jobs.sqlite3")
    sandbox_id = store.get_job(job_id)["sandbox_id"]
    assert sandbox_id, "the job's sandbox id is stored while it runs"
    jail = pid_namespaces(processes_of_run(job_id)) - pid_namespaces([os.getpid()])
    assert bool(jail) == (probe.backend == "local")

    server.stop(signal.SIGKILL)   # nothing gets to clean up
    survivor = None
    if probe.backend == "local":
        # The agent dies with its supervisor (bubblewrap's parent-death signal, the agent's lifeline).
        wait_until(lambda: not in_namespaces(jail) and not processes_of_run(job_id), 10,
                   "the jail dies with the server")
        survivor = SurvivingJail(store, job_id)   # as if one had survived it (issue 15 saw two)
    else:
        assert probe.alive(store, [job_id]), "the sandbox outlived the server that started it"

    try:
        again = server.restart_on_same_data()
        start_server.track(again)
        wait_until(lambda: store.get_job(job_id)["status"] == "interrupted", 60, "the job is recovered")
        assert probe.alive(store, [job_id]) == [], "recovery ended the sandbox before marking the job"
        assert "1 sandbox(es) ended by id" in again.read_log()
        if survivor is not None:
            survivor.assert_ended()
    finally:
        if survivor is not None:
            survivor.clean_up()
    events = events_of(store, job_id)
    assert events[-1]["data"]["status"] == "interrupted" and "restarted" in events[-1]["data"]["message"]


class SurvivingJail:
    """A process in a run cgroup of its own, stored as the job's sandbox id: what a jail that
    outlived its server would leave (real ones die with it). The cgroup is named after this
    test process, which lives, so no other process's sweep takes it: only recovery by the
    stored id can end it."""

    def __init__(self, store: JobStore, job_id: str):
        from agent_sandbox.isolation.cgroups import RunCgroup
        self.group = RunCgroup.create(job_id, 256, 16, 0)
        procs = self.group.procs_files()
        self.proc = subprocess.Popen(["sh", "-c", 'for f in "$@"; do echo $$ > "$f"; done; exec sleep 300',
                                      "sh", *procs], start_new_session=True)
        wait_until(lambda: self.proc.pid in in_cgroup(self.group.name), 10, "it joined the cgroup")
        store.update_job(job_id, sandbox_id=self.group.name)

    def assert_ended(self) -> None:
        assert self.proc.wait(timeout=10) == -signal.SIGKILL
        assert in_cgroup(self.group.name) == [] and not any(p.exists() for p in self.group.paths.values())

    def clean_up(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.group.remove()


def test_recovery_reports_nothing_to_end_after_a_clean_stop(start_server):
    server = start_server(APP_WORKERS=1)
    c = server.client()
    job_id = c.submit(LONG).json()["id"]
    c.wait_for_event(job_id, lambda f: f["event"] == "output")
    server.stop(signal.SIGTERM)
    store = JobStore(server.root / "outputs" / "jobs.sqlite3")
    assert store.get_job(job_id)["status"] == "interrupted" and store.get_job(job_id)["sandbox_id"]
    again = server.restart_on_same_data()
    start_server.track(again)
    assert "recovery:" not in again.read_log(), "a clean stop leaves recovery nothing to do"


def test_a_run_that_does_not_stop_in_time_is_ended_by_its_id(start_server):
    """APP_STOP_SECONDS=0: no run gets to stop the normal way; each sandbox is ended by the id
    stored with its job (the jail's cgroup emptied), and the job recorded, before the exit."""
    server = start_server(APP_WORKERS=2, APP_STOP_SECONDS=0)
    c = server.client()
    jobs = [c.submit(LONG).json()["id"] for _ in range(2)]
    for job_id in jobs:
        c.wait_for_event(job_id, lambda f: f["event"] == "output")
    store = JobStore(server.root / "outputs" / "jobs.sqlite3")
    sandboxes = [store.get_job(job_id)["sandbox_id"] for job_id in jobs]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    assert "2 run(s) did not stop in time; their sandboxes were ended by id" in server.read_log()
    assert [in_cgroup(s) for s in sandboxes] == [[], []] and Probe("local").alive(store, jobs) == []
    assert [store.get_job(job_id)["status"] for job_id in jobs] == ["interrupted", "interrupted"]
