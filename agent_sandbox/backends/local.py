"""The local backend: the agent in a bubblewrap jail on this machine.

Inside the jail (agent_sandbox.isolation.jail): the workspace read-only at /workspace,
a fresh folder at /outputs, a scratch folder at /tmp, the system's /usr and
the Python environment read-only, the agent_sandbox package at /opt/agent;
nothing else of the host. Own namespaces (the network too: model calls go
through the host's relay; the opt-in network is user-mode networking that
cannot reach the host, agent_sandbox.isolation.netjail), no capabilities, killed with
its parent.

As root, the jail runs as the unprivileged SANDBOX_UID, in a cgroup of its
own (memory, processes, CPU) and with /outputs and /tmp on a filesystem of
`disk_mb` (agent_sandbox.isolation.scratch). Without root it runs as the calling user,
processes are capped by RLIMIT_NPROC in the jail's own user namespace, and
memory and disk are reported as not enforced.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox import settings
from agent_sandbox.backends.contract import Backend, RunMonitor, SandboxError, Streams, agent_command
from agent_sandbox.backends.process import ProcessSandbox
from agent_sandbox.events import Status
from agent_sandbox.isolation import cgroups, netjail, uids
from agent_sandbox.isolation.cgroups import CgroupUnavailable, RunCgroup
from agent_sandbox.isolation.jail import SANDBOX_UID, Jail, leftover_stages, make_stage, privileged, remove_stage
from agent_sandbox.isolation.scratch import DiskUnavailable, RunSpace
from agent_sandbox.isolation.scratch import leftovers as leftover_spaces
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.process_group import end_group
from agent_sandbox.settings import setting
from agent_sandbox.spec import RunSpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../agent_sandbox
AGENT_ROOT = "/opt/agent"
RLIMIT_NPROC_NOTE = "RLIMIT_NPROC, counted in the jail's own user namespace"


@dataclass
class LocalConfig:
    bwrap: str = setting(None, factory=lambda: shutil.which("bwrap") or "",
                         doc="path of bubblewrap; empty if missing")
    python: str = setting("AGENT_SANDBOX_LOCAL_PYTHON", sys.executable,
                          "the Python that runs the agent inside the jail (an environment with the "
                          "`sandbox` extra, e.g. a venv of its own)", parse=settings.executable,
                          shown="the one running the library")
    allow_unsandboxed: bool = setting("AGENT_SANDBOX_ALLOW_UNSANDBOXED", False,
                                      "let the local backend run without bubblewrap (unsafe; every run warns; never as root)",
                                      shown="off")
    scratch_root: str = setting("AGENT_SANDBOX_SCRATCH", factory=tempfile.gettempdir, shown="system temp",
                                doc="where the local and Docker backends keep each run's `/outputs` and `/tmp`")
    kill_grace: float = setting(None, 2.0, "seconds between SIGTERM and SIGKILL when stopping")
    uids: str = setting("AGENT_SANDBOX_UIDS", "2000000-2065535",
                        "host uids (and gids) the local and Docker sandboxes run as when started by root, "
                        "one of its own per running sandbox (the kernel's per-uid limits are then per run); "
                        "a range no user or /etc/subuid entry of the host has")


def sweep_run_leftovers(scratch_root: str) -> int:
    """What jails and containers of dead processes left on this host: cgroups (and any
    jail still running in one: every process of it is killed), run folders, stages.
    Returns how many jails were still running."""
    ended = sum(group.remove() for group in cgroups.leftovers())
    for stage in leftover_stages():
        remove_stage(stage)
    spaces = leftover_spaces(scratch_root)
    for space in spaces:
        try:
            space.remove()
        except OSError:
            pass   # busy: the next sweep tries again
    return ended


class LocalBackend(Backend):
    name = "local"

    def __init__(self, **config):
        self.config = settings.load(LocalConfig, **config)

    def sandbox(self, spec: RunSpec) -> LocalSandbox:
        return LocalSandbox(self, spec)

    def sweep_orphans(self) -> int:
        """Remove what runs of processes that died left: cgroups (killing any jail
        still in them), capped filesystems and their images, stages; returns how many
        jails were still running."""
        return sweep_run_leftovers(self.config.scratch_root)

    def end_sandbox(self, sandbox_id: str) -> bool:
        """Kill every process of the run's cgroup (its sandbox id) and remove it."""
        group = RunCgroup.named(sandbox_id)
        return group.remove() if group is not None else False

    def jail(self, spec: RunSpec, space: RunSpace, cgroup: RunCgroup | None, stage: Path | None,
             uid: int = SANDBOX_UID) -> Jail:
        jail = Jail(env=self.environment(spec), workdir="/", network=spec.needs_network,
                    cgroup=cgroup, stage=stage, uid=uid).system()
        # /tmp before the Python: a Python environment under /tmp (a clone there)
        # must be bound on top of the jail's /tmp, not hidden by it.
        jail.bind(space.tmp, "/tmp", writable=True).python(self.config.python)
        return (jail.bind(PACKAGE_DIR, f"{AGENT_ROOT}/agent_sandbox")
                .bind(spec.workspace, "/workspace")
                .bind(space.outputs, "/outputs", writable=True))

    def agent_command(self, spec: RunSpec, enforcement: dict[str, str], outputs: str = "/outputs",
                      workspace: str = "/workspace") -> list[str]:
        root = AGENT_ROOT if self.config.bwrap else str(PACKAGE_DIR.parent)
        argv = agent_command(self.config.python, root,
                             [*spec.agent_args(workspace, outputs, enforcement), "--secrets-from-stdin"])
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

    def limits_enforced(self, spec: RunSpec, space: RunSpace,
                        sandboxed: bool) -> tuple[dict[str, str], RunCgroup | None]:
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



class LocalSandbox(ProcessSandbox):
    """One run: /outputs and /tmp on the run's own space, the agent in the jail (its cgroup as root)."""

    def __init__(self, backend: LocalBackend, spec: RunSpec):
        self.backend, self.config, self.spec = backend, backend.config, spec
        self.space: RunSpace | None = None
        self.cgroup: RunCgroup | None = None
        self.stage: Path | None = None
        self.enforcement: dict[str, str] = {}
        self.run: RunMonitor | None = None
        self.fence: netjail.JailNetwork | None = None
        self.uid: uids.RunUid | None = None

    def create(self, run: RunMonitor) -> None:
        self.run = run
        sandboxed = bool(self.config.bwrap)
        if not sandboxed and not self.config.allow_unsandboxed:
            raise SandboxError("bubblewrap (bwrap) is not installed; install it, or set "
                               "AGENT_SANDBOX_ALLOW_UNSANDBOXED=1 to run without a sandbox")
        if not sandboxed and privileged():
            raise SandboxError("bubblewrap (bwrap) is not installed, and running without a sandbox as root "
                               "would give the agent's commands the host: install bubblewrap")
        owner = None
        try:
            if sandboxed and privileged():   # a uid of its own: the kernel's per-uid limits are this run's
                self.uid = uids.take(self.config.uids)
                owner = (self.uid.uid, self.uid.uid)
            self.space = RunSpace.create(self.config.scratch_root, f"agent-{self.spec.job_id}-",
                                         self.spec.limits.disk_mb, owner)
        except uids.NoUid as exc:
            raise SandboxError(str(exc)) from exc
        except (DiskUnavailable, OSError) as exc:
            raise SandboxError(f"could not prepare the sandbox's disk: {exc}") from exc
        self.enforcement, self.cgroup = self.backend.limits_enforced(self.spec, self.space, sandboxed)
        run.status(Status.STARTING, "starting the local sandbox" if sandboxed else "starting WITHOUT a sandbox",
                   sandbox_id=self.cgroup.name if self.cgroup else "")
        if not sandboxed:
            run.emit(ev.WARNING, {"message": "running without a sandbox: "
                                             "AGENT_SANDBOX_ALLOW_UNSANDBOXED is set and bwrap is missing"})

    def start(self, run: RunMonitor) -> Streams:
        backend, spec = self.backend, self.spec
        assert self.space is not None   # (create made it)
        if not self.config.bwrap:
            return self.spawn(backend.agent_command(spec, self.enforcement, str(self.space.outputs),
                                                    str(spec.workspace)), backend.environment(spec))
        self.stage = make_stage() if privileged() else None
        jail = backend.jail(spec, self.space, self.cgroup, self.stage, self.uid.uid if self.uid else SANDBOX_UID)
        args_fd = jail.write_options()
        self.fence = jail.fence
        try:  # the jail's options go in on a descriptor: its environment is in them, not in bwrap's
            streams = self.spawn(jail.command(backend.agent_command(spec, self.enforcement), args_fd), {},
                                 pass_fds=jail.pass_fds(args_fd))
        finally:
            os.close(args_fd)
        if self.fence is not None:   # the opt-in network; bubblewrap holds the agent until it is up
            try:
                self.fence.connect()
            except netjail.NetworkUnavailable as exc:
                raise SandboxError(f"the opt-in network could not be set up: {exc}") from None
        return streams

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL; the PID namespace takes every child with it."""
        assert self.proc is not None   # (only a started agent is stopped)
        end_group(self.proc, self.config.kill_grace)

    def why_ended(self) -> tuple[str, str] | None:
        if self.cgroup is None or not self.cgroup.counters()["oom_kills"]:
            return None
        # The agent itself was the one killed: say so, the agent could not.
        reason = (f"out of memory: the sandbox reached its memory limit ({self.spec.limits.memory_mb} MB) "
                  "and the kernel killed the agent")
        assert self.run is not None   # (create keeps it)
        self.run.emit(ev.ERROR, {"message": reason})
        return Status.FAILED, reason

    def outputs(self) -> DirectorySource:
        assert self.space is not None   # (outputs are read only after create)
        return DirectorySource(self.space.outputs)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        if self.fence is not None:
            self.fence.close()
        if self.cgroup is not None:
            self.cgroup.remove()
        remove_stage(self.stage)
        if self.space is not None:
            self.space.remove()
        if self.uid is not None:   # once nothing of the run is left
            self.uid.release()
