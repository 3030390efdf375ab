"""The local backend: the agent in a bubblewrap jail on this machine.

Inside the jail (agent_sandbox.jail): the workspace read-only at /workspace,
a fresh folder at /outputs, a scratch folder at /tmp, the system's /usr and
the Python environment read-only, the agent_sandbox package at /opt/agent;
nothing else of the host. Own namespaces (the network too: model calls go
through the host's relay; the opt-in network is user-mode networking that
cannot reach the host, agent_sandbox.netjail), no capabilities, killed with
its parent.

As root, the jail runs as the unprivileged SANDBOX_UID, in a cgroup of its
own (memory, processes, CPU) and with /outputs and /tmp on a filesystem of
`disk_mb` (agent_sandbox.scratch). Without root it runs as the calling user,
processes are capped by RLIMIT_NPROC in the jail's own user namespace, and
memory and disk are reported as not enforced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox import cgroups
from agent_sandbox import events as ev
from agent_sandbox import netjail
from agent_sandbox.backends import EventCallback
from agent_sandbox.backends.monitor import RunMonitor
from agent_sandbox.cgroups import CgroupUnavailable, RunCgroup
from agent_sandbox.jail import (SANDBOX_GID, SANDBOX_UID, Jail, leftover_stages, make_stage, privileged,
                                remove_stage)
from agent_sandbox.outputs import DirectorySource, collect_outputs
from agent_sandbox.scratch import DiskUnavailable, RunSpace
from agent_sandbox.scratch import leftovers as leftover_spaces
from agent_sandbox.spec import RunResult, RunSpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../agent_sandbox
AGENT_ROOT = "/opt/agent"
RLIMIT_NPROC_NOTE = "RLIMIT_NPROC, counted in the jail's own user namespace"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


@dataclass
class LocalConfig:
    bwrap: str = field(default_factory=lambda: shutil.which("bwrap") or "")  # path of bubblewrap; "" if missing
    python: str = sys.executable          # the Python that runs the agent inside the jail
    allow_unsandboxed: bool = field(default_factory=lambda: _env_flag("AGENT_SANDBOX_ALLOW_UNSANDBOXED"))  # run without bubblewrap (unsafe; never as root)
    scratch_root: str = field(default_factory=lambda: os.environ.get("AGENT_SANDBOX_SCRATCH", tempfile.gettempdir()))  # host folder for per-run /outputs and /tmp
    kill_grace: float = 2.0               # seconds between SIGTERM and SIGKILL when stopping


class SandboxUnavailable(RuntimeError):
    pass


def sweep_run_leftovers(scratch_root: str) -> int:
    """What jails and containers of dead processes left on this host (their processes die
    with them: --die-with-parent, docker rm): cgroups, run folders, stages."""
    for group in cgroups.leftovers():
        group.remove()
    for stage in leftover_stages():
        remove_stage(stage)
    spaces = leftover_spaces(scratch_root)
    for space in spaces:
        try:
            space.remove()
        except OSError:
            pass   # busy: the next sweep tries again
    return len(spaces)


class LocalBackend:
    name = "local"

    def __init__(self, **config):
        self.config = LocalConfig(**config)

    def sweep_orphans(self) -> int:
        """Remove what runs of processes that died left: cgroups (killing anything
        still in them), capped filesystems and their images, stages; returns how many runs."""
        return sweep_run_leftovers(self.config.scratch_root)

    def jail(self, spec: RunSpec, space: RunSpace, cgroup: RunCgroup | None, stage: Path | None) -> Jail:
        jail = Jail(env=self.environment(spec), workdir="/workspace", network=spec.needs_network,
                    cgroup=cgroup, stage=stage).system()
        # /tmp before the Python: a Python environment under /tmp (a clone there)
        # must be bound on top of the jail's /tmp, not hidden by it.
        jail.bind(space.tmp, "/tmp", writable=True).python(self.config.python)
        return (jail.bind(PACKAGE_DIR, f"{AGENT_ROOT}/agent_sandbox")
                .bind(spec.workspace, "/workspace")
                .bind(space.outputs, "/outputs", writable=True))

    def agent_command(self, spec: RunSpec, enforcement: dict[str, str], outputs: str = "/outputs",
                      workspace: str = "/workspace") -> list[str]:
        argv = [self.config.python, "-m", "agent_sandbox.coding_agent",
                *spec.agent_args(workspace, outputs, enforcement), "--secrets-from-stdin"]
        if enforcement["max_processes"] == RLIMIT_NPROC_NOTE:
            argv += ["--max-processes", str(spec.limits.max_processes)]
        return argv

    def environment(self, spec: RunSpec) -> dict[str, str]:
        """The jail's whole environment: nothing inherited from the host but what is listed."""
        env = {"PATH": f"{Path(self.config.python).parent}:/usr/local/bin:/usr/bin:/bin",
               "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "PYTHONPATH": AGENT_ROOT if self.config.bwrap else str(PACKAGE_DIR.parent),
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
               "MPLCONFIGDIR": "/tmp/matplotlib"}
        env.update(spec.env)  # secrets go on stdin instead: they must not sit in any environ
        return env

    def run(self, spec: RunSpec, on_event: EventCallback,
            cancel: threading.Event | None = None) -> RunResult:
        monitor = RunMonitor(spec, on_event, cancel)
        refusal = self._refusal(spec)
        if refusal:
            monitor.emit(ev.ERROR, {"message": refusal})
            return RunResult(status=ev.ERROR_STATUS, reason=refusal)
        sandboxed = bool(self.config.bwrap)
        owner = (SANDBOX_UID, SANDBOX_GID) if sandboxed and privileged() else None
        cgroup = stage = space = None
        try:
            try:
                space = RunSpace.create(self.config.scratch_root, f"agent-{spec.job_id}-", spec.limits.disk_mb, owner)
            except (DiskUnavailable, OSError) as exc:
                reason = f"could not prepare the sandbox's disk: {exc}"
                monitor.emit(ev.ERROR, {"message": reason})
                return RunResult(status=ev.ERROR_STATUS, reason=reason)
            enforcement, cgroup = self._limits(spec, space, sandboxed)
            monitor.status("starting", "starting the local sandbox" if sandboxed
                           else "starting WITHOUT a sandbox")
            if sandboxed:
                stage = make_stage() if privileged() else None
                jail = self.jail(spec, space, cgroup, stage)
                args_fd = jail.write_options()
                try:
                    argv = jail.command(self.agent_command(spec, enforcement), args_fd)
                    exit_code = monitor.supervise(argv, {}, self._stop, pass_fds=jail.pass_fds(args_fd),
                                                  on_start=lambda proc: self._connect(jail, proc, monitor))
                finally:
                    os.close(args_fd)
                    if jail.fence is not None:
                        jail.fence.close()
            else:
                monitor.emit(ev.WARNING, {"message": "running without a sandbox: "
                                          "AGENT_SANDBOX_ALLOW_UNSANDBOXED is set and bwrap is missing"})
                argv = self.agent_command(spec, enforcement, str(space.outputs), str(spec.workspace))
                exit_code = monitor.supervise(argv, self.environment(spec), self._stop)
            status, reason = monitor.outcome(exit_code)
            if cgroup and monitor.final is None and not monitor.stopped and cgroup.counters()["oom_kills"]:
                # The agent itself was the one killed: say so, the agent could not.
                status, reason = ev.FAILED, (f"out of memory: the sandbox reached its memory limit "
                                             f"({spec.limits.memory_mb} MB) and the kernel killed the agent")
                monitor.emit(ev.ERROR, {"message": reason})
            monitor.status("collecting", "collecting outputs")
            manifest = collect_outputs(DirectorySource(space.outputs), spec.results, spec.limits)
            monitor.result_event(status, reason, manifest)
            return RunResult(status=status, reason=reason, exit_code=exit_code,
                             duration=monitor.duration, manifest=manifest,
                             usage=monitor.usage, summary=monitor.summary)
        finally:
            if cgroup is not None:
                cgroup.remove()
            remove_stage(stage)
            if space is not None:
                space.remove()

    def _connect(self, jail: Jail, proc: subprocess.Popen, monitor: RunMonitor) -> None:
        """The opt-in network, once bubblewrap runs (it holds the agent until then)."""
        if jail.fence is None:
            return
        try:
            jail.fence.connect()
        except netjail.NetworkUnavailable as exc:
            monitor.emit(ev.ERROR, {"message": f"no network for the sandbox: {exc}"})
            monitor.stopped = (ev.ERROR_STATUS, f"the opt-in network could not be set up: {exc}")
            self._stop(proc)

    def _refusal(self, spec: RunSpec) -> str:
        if not self.config.bwrap and not self.config.allow_unsandboxed:
            return ("bubblewrap (bwrap) is not installed; install it, or set "
                    "AGENT_SANDBOX_ALLOW_UNSANDBOXED=1 to run without a sandbox")
        if not self.config.bwrap and privileged():
            return ("bubblewrap (bwrap) is not installed, and running without a sandbox as root "
                    "would give the agent's commands the host: install bubblewrap")
        if not spec.workspace.is_dir():
            return f"workspace {spec.workspace} does not exist"
        return ""

    def _limits(self, spec: RunSpec, space: RunSpace, sandboxed: bool) -> tuple[dict[str, str], RunCgroup | None]:
        """How each limit holds on this run (for run_started), and the run's cgroup if it has one."""
        limits = spec.limits
        if not sandboxed:
            why = "not enforced: running without a sandbox"
            return {"max_processes": why, "memory_mb": why, "cpu": why, "disk_mb": why}, None
        try:
            cgroup = RunCgroup.create(spec.job_id, limits.memory_mb, limits.max_processes, limits.cpu)
        except CgroupUnavailable as exc:
            why = f"not enforced: {exc}"
            return {"max_processes": RLIMIT_NPROC_NOTE, "memory_mb": why, "cpu": why,
                    "disk_mb": space.enforcement}, None
        return {"max_processes": "cgroup pids.max", "memory_mb": "cgroup memory limit, swap included",
                "cpu": "cgroup CPU quota", "disk_mb": space.enforcement}, cgroup

    def _stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM the group, then SIGKILL; the PID namespace takes every child with it."""
        for sig, wait in ((signal.SIGTERM, self.config.kill_grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
