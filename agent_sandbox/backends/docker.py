"""The Docker backend: the agent in a throwaway container, one per run.

The container gets the workspace read-only at /workspace, a fresh host folder
at /outputs (collected after the container is gone), a /tmp, and nothing else
writable: read-only root filesystem, no capabilities, no new privileges, a
non-root user, memory/CPU/process limits, no network (model calls go through
the host's relay on stdin; the opt-in network is user-mode networking that
cannot reach the host, agent_sandbox.isolation.netjail). As root, /outputs and /tmp share one filesystem of `disk_mb`
(agent_sandbox.isolation.scratch); otherwise /tmp is a tmpfs and /outputs is not capped
(reported in run_started). Secrets go in on stdin, never in its environment or
command line (`docker inspect` would show those). Labels name the app, the job
and the owning process, so `sweep_orphans()` can remove what a crashed process
left behind. The agent's own agent.log is not brought back: the host got
every event in it live. Uses the docker CLI: no SDK to install.

The image comes from docker/build-image.sh.
"""

from __future__ import annotations

import os
import re
import secrets as random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from agent_sandbox import settings
from agent_sandbox.backends.contract import Backend, RunMonitor, SandboxError, Streams, agent_command
from agent_sandbox.backends.process import ProcessSandbox
from agent_sandbox.events import Status
from agent_sandbox.isolation import netjail, uids
from agent_sandbox.isolation.owners import process_alive, this_process
from agent_sandbox.isolation.scratch import DiskUnavailable, RunSpace
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.settings import setting
from agent_sandbox.spec import RunSpec

LABEL = "agent-sandbox"  # label prefix: agent-sandbox.app, .job, .owner
CLI_TIMEOUT = 60.0       # seconds for one docker CLI call other than `run`
AGENT_LOG = "agent.log"  # the agent mirrors its events there when it runs in Docker
IMAGE_PACKAGE_ROOT = "/opt/agent"   # where docker/Dockerfile puts the agent_sandbox package


@dataclass
class DockerConfig:
    docker: str = setting("AGENT_SANDBOX_DOCKER_CLI", factory=lambda: shutil.which("docker") or "",
                          shown="`docker` on PATH", doc="the docker CLI")
    host: str = setting("AGENT_SANDBOX_DOCKER_HOST", "", "`DOCKER_HOST` for the CLI (same machine: bind mounts)",
                        shown="docker's default")
    image: str = setting("AGENT_SANDBOX_DOCKER_IMAGE", "agent-sandbox:latest",
                         "image to run (and to build); the emulator's Docker runtime and the tests use it too")
    app: str = setting("AGENT_SANDBOX_DOCKER_APP", "agent-sandbox", "label value that marks our containers")
    user: str = setting("AGENT_SANDBOX_DOCKER_USER", "", "container user (uid:gid) when the host runs as root "
                        "(else the host's uid)", shown="a uid of its own per run, from `AGENT_SANDBOX_UIDS`")
    uids: str = setting("AGENT_SANDBOX_UIDS", "2000000-2065535")  # doc: LocalConfig
    tmp_mb: int = setting("AGENT_SANDBOX_DOCKER_TMP_MB", 512, "size of the `/tmp` tmpfs in MB when not root "
                          "(counts as memory); as root `/tmp` shares the run's `AGENT_SANDBOX_DISK_MB`")
    scratch_root: str = setting("AGENT_SANDBOX_SCRATCH", factory=tempfile.gettempdir)  # doc: LocalConfig
    stop_grace: int = setting("AGENT_SANDBOX_DOCKER_STOP_GRACE", 2, "seconds from SIGTERM to SIGKILL on stop")


class DockerUnavailable(SandboxError, RuntimeError):
    pass


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, **config):
        self.config = settings.load(DockerConfig, **config)
        self.owner = this_process()

    def sandbox(self, spec: RunSpec) -> DockerSandbox:
        return DockerSandbox(self, spec)

    # -- the docker CLI ---------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if not self.config.docker:
            raise DockerUnavailable("the docker CLI is not installed (see scripts/docker-engine.sh)")
        proc = subprocess.run([self.config.docker, *args], env=self.cli_env(), capture_output=True,
                              text=True, timeout=CLI_TIMEOUT)
        if check and proc.returncode != 0:
            raise DockerUnavailable(_cli_problem(args, proc.stderr))
        return proc

    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.config.host:
            env["DOCKER_HOST"] = self.config.host
        return env

    def check_image(self) -> None:
        """Raise DockerUnavailable with what to do when the engine or the image is missing."""
        proc = self.cli("image", "inspect", "--format", "{{.Id}}", self.config.image, check=False)
        if proc.returncode == 0:
            return
        if "no such image" in proc.stderr.lower():
            raise DockerUnavailable(f"Docker image {self.config.image} not found; build it with docker/build-image.sh")
        raise DockerUnavailable(_cli_problem(("image",), proc.stderr))

    def containers(self, *filters: str) -> list[tuple[str, str]]:
        """(id, owner label) of our containers, running or not, matching the label filters."""
        args = ["ps", "-a", "--no-trunc", "--filter", f"label={LABEL}.app={self.config.app}"]
        for f in filters:
            args += ["--filter", f"label={f}"]
        out = self.cli(*args, "--format", f'{{{{.ID}}}} {{{{.Label "{LABEL}.owner"}}}}').stdout
        return [tuple((line.split(" ", 1) + [""])[:2]) for line in out.splitlines() if line.strip()]

    def remove(self, *containers: str) -> None:
        if containers:
            self.cli("rm", "-f", *containers, check=False)

    def sweep_orphans(self) -> int:
        """Remove our containers whose owning process is gone, then the run folders
        (capped filesystems) they used; returns how many containers."""
        from agent_sandbox.backends.local import sweep_run_leftovers

        orphans = [cid for cid, owner in self.containers() if not process_alive(owner)]
        self.remove(*orphans)
        sweep_run_leftovers(self.config.scratch_root)
        return len(orphans)

    def end_sandbox(self, sandbox_id: str) -> bool:
        """Remove the run's container by its name (its sandbox id), running or not."""
        if not re.fullmatch(r"agent-[a-zA-Z0-9_.-]+", sandbox_id):
            return False
        proc = self.cli("rm", "-f", sandbox_id, check=False)
        return proc.returncode == 0 and "no such container" not in proc.stderr.lower()

    # -- one run ----------------------------------------------------------

    def command(self, spec: RunSpec, name: str, space: RunSpace, user: str) -> list[str]:
        """The full argv: `docker run` around `python -m agent_sandbox.agent`."""
        limits = spec.limits
        # No --init: the agent is PID 1 (not dumpable), so no command can open its stdout, the
        # host channel, through /proc/1/fd/1; and no log: that channel is not kept on the host's disk.
        args = [self.config.docker, "run", "-i", "--rm", "--log-driver", "none", "--pull", "never", "--name", name,
                "--label", f"{LABEL}.app={self.config.app}", "--label", f"{LABEL}.job={spec.job_id}",
                "--label", f"{LABEL}.owner={self.owner}",
                "--user", user, "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m",
                "--cpus", f"{limits.cpu:g}", "--pids-limit", str(limits.max_processes),
                "--mount", f"type=bind,src={spec.workspace.resolve()},dst=/workspace,readonly",
                "--mount", f"type=bind,src={space.outputs},dst=/outputs",
                "--workdir", "/"]   # the agent's; its commands run in /workspace
        if space.image is not None:   # the capped filesystem holds /tmp too
            args += ["--mount", f"type=bind,src={space.tmp},dst=/tmp"]
        else:
            args += ["--tmpfs", f"/tmp:rw,nosuid,nodev,exec,size={self.config.tmp_mb}m,mode=1777"]
        # No network: model calls go through the relay on stdin. The opt-in network is
        # user-mode networking in the container's own namespace (agent_sandbox.isolation.netjail),
        # never Docker's bridge, which reaches the host.
        args += ["--network", "none"]
        if spec.needs_network:
            args += ["--mount", f"type=bind,src={netjail.resolv_conf()},dst=/etc/resolv.conf,readonly"]
        for key, value in spec.env.items():  # non-secret settings only: secrets go on stdin
            args += ["--env", f"{key}={value}"]
        return args + [self.config.image, *agent_command(
            "python", IMAGE_PACKAGE_ROOT, [*spec.agent_args(enforced=self.enforcement(space)), "--secrets-from-stdin"])]

    def user(self) -> tuple[str, uids.RunUid | None]:
        """The container's user, and the uid it holds: as root a uid of its own per run (the
        kernel's per-uid limits are then the run's), unless AGENT_SANDBOX_DOCKER_USER names one."""
        if os.geteuid() != 0:
            return f"{os.getuid()}:{os.getgid()}", None
        if self.config.user:
            return self.config.user, None
        held = uids.take(self.config.uids)
        return f"{held.uid}:{held.uid}", held

    def enforcement(self, space: RunSpace) -> dict[str, str]:
        disk = space.enforcement if space.image is not None else (
            f"{space.enforcement} for /outputs; /tmp is a {self.config.tmp_mb} MB tmpfs")
        return {"max_processes": "docker --pids-limit (cgroup)", "memory_mb": "docker --memory, swap included",
                "cpu": "docker --cpus", "disk_mb": disk}



class DockerSandbox(ProcessSandbox):
    """One run: a container from the image, its /outputs a host folder collected after it is gone."""

    errors = (OSError, subprocess.TimeoutExpired)

    def __init__(self, backend: DockerBackend, spec: RunSpec):
        self.backend, self.config, self.spec = backend, backend.config, spec
        self.space: RunSpace | None = None
        self.network: netjail.UserNetwork | None = None
        self.user = ""
        self.uid: uids.RunUid | None = None
        self.name = f"agent-{re.sub(r'[^a-zA-Z0-9_.-]', '-', spec.job_id)[:40]}-{random.token_hex(4)}"

    def create(self, run: RunMonitor) -> None:
        self.backend.check_image()
        try:
            self.user, self.uid = self.backend.user()
        except uids.NoUid as exc:
            raise SandboxError(str(exc)) from exc
        uid, _, gid = self.user.partition(":")  # the container's user owns /outputs and /tmp
        try:
            self.space = RunSpace.create(self.config.scratch_root, f"agent-{self.spec.job_id}-",
                                         self.spec.limits.disk_mb, (int(uid), int(gid or uid)),
                                         folders=("outputs", "tmp"))
        except DiskUnavailable as exc:
            raise SandboxError(str(exc)) from exc
        # The name is the sandbox id: reported before the container exists, so a container
        # started just before this process died is found by it too.
        run.status(Status.STARTING, f"starting Docker container {self.name} from {self.config.image}",
                   sandbox_id=self.name)

    def start(self, run: RunMonitor) -> Streams:
        assert self.space is not None   # (create made it)
        streams = self.spawn(self.backend.command(self.spec, self.name, self.space, self.user), self.backend.cli_env())
        if self.spec.needs_network:
            self.connect()
        return streams

    def connect(self) -> None:
        """The opt-in network: user-mode networking for the container's namespace once it
        runs (the agent waits for its route before it starts)."""
        assert self.proc is not None   # (start spawned it)
        deadline = time.monotonic() + 30
        pid = 0
        while not pid and self.proc.poll() is None and time.monotonic() < deadline:
            out = self.backend.cli("inspect", "--format", "{{.State.Pid}}", self.name, check=False).stdout.strip()
            pid = int(out) if out.isdigit() else 0
            if not pid:
                time.sleep(0.05)
        try:
            if not pid:
                raise netjail.NetworkUnavailable("the container did not start")
            self.network = netjail.UserNetwork(pid)
            self.network.start()
        except netjail.NetworkUnavailable as exc:
            raise SandboxError(f"the opt-in network could not be set up: {exc}") from None

    def stop(self) -> None:
        """SIGTERM to the agent (it stops its command and reports), SIGKILL after the grace."""
        assert self.proc is not None   # (only a started agent is stopped)
        self.backend.cli("stop", "--time", str(self.config.stop_grace), self.name, check=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the CLI hangs on a gone container: end it ourselves
            self.proc.kill()

    def end(self) -> None:
        self.backend.remove(self.name)  # nothing may still write to /outputs while we collect it

    def outputs(self) -> DirectorySource:
        assert self.space is not None   # (outputs are read only after create)
        log = self.space.outputs / AGENT_LOG
        if log.is_symlink() or log.is_file():
            # The agent's own copy of its events: every line already reached us live,
            # and as a result it would count against the output limits.
            log.unlink()
        return DirectorySource(self.space.outputs)

    def close(self) -> None:
        if self.space is not None:
            if self.network is not None:
                self.network.stop()
            self.backend.remove(self.name)  # --rm covers a normal exit; this covers everything else
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            self.space.remove()
        if self.uid is not None:   # the container is gone: its uid is free
            self.uid.release()


def _cli_problem(args: tuple[str, ...], stderr: str) -> str:
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no answer"
    if "connect" in detail.lower() or "daemon running" in detail.lower():
        return f"the Docker engine is not reachable ({detail}); start it with scripts/docker-engine.sh"
    return f"docker {args[0]} failed: {detail}"
