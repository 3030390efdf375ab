"""The Docker backend: the agent in a throwaway container, one per run.

The container gets the workspace read-only at /workspace, a fresh host folder
at /outputs (collected after the container is gone), a /tmp, and nothing else
writable: read-only root filesystem, no capabilities, no new privileges, a
non-root user, memory/CPU/process limits, no network (model calls go through
the host's relay on stdin; the opt-in network is user-mode networking that
cannot reach the host, agent_sandbox.netjail). As root, /outputs and /tmp share one filesystem of `disk_mb`
(agent_sandbox.scratch); otherwise /tmp is a tmpfs and /outputs is not capped
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
import threading
import time
from dataclasses import dataclass, field

from agent_sandbox import events as ev
from agent_sandbox import netjail
from agent_sandbox.backends import EventCallback, process_alive, this_process
from agent_sandbox.backends.monitor import RunMonitor
from agent_sandbox.outputs import DirectorySource, collect_outputs
from agent_sandbox.scratch import DiskUnavailable, RunSpace
from agent_sandbox.spec import RunResult, RunSpec

LABEL = "agent-sandbox"  # label prefix: agent-sandbox.app, .job, .owner
CLI_TIMEOUT = 60.0       # seconds for one docker CLI call other than `run`
AGENT_LOG = "agent.log"  # the agent mirrors its events there when it runs in Docker


def _env(name: str, default: str) -> str:
    return os.environ.get(f"AGENT_SANDBOX_DOCKER_{name}") or default


@dataclass
class DockerConfig:
    docker: str = field(default_factory=lambda: _env("CLI", shutil.which("docker") or ""))  # the docker CLI; "" if missing
    host: str = field(default_factory=lambda: _env("HOST", ""))  # DOCKER_HOST for the CLI; "" keeps docker's own default
    image: str = field(default_factory=lambda: _env("IMAGE", "agent-sandbox:latest"))  # image built by docker/build-image.sh
    app: str = field(default_factory=lambda: _env("APP", "agent-sandbox"))  # label value that marks our containers
    user: str = field(default_factory=lambda: _env("USER", "10001:10001"))  # container uid:gid when the host runs as root
    tmp_mb: int = field(default_factory=lambda: int(_env("TMP_MB", "512")))  # size of the tmpfs at /tmp when not root (counts as memory)
    scratch_root: str = field(default_factory=lambda: os.environ.get("AGENT_SANDBOX_SCRATCH", tempfile.gettempdir()))  # host folder for per-run /outputs
    stop_grace: int = field(default_factory=lambda: int(_env("STOP_GRACE", "2")))  # seconds between SIGTERM and SIGKILL on stop


class DockerUnavailable(RuntimeError):
    pass


class DockerBackend:
    name = "docker"

    def __init__(self, **config):
        self.config = DockerConfig(**config)
        self.owner = this_process()

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

    # -- one run ----------------------------------------------------------

    def command(self, spec: RunSpec, name: str, space: RunSpace) -> list[str]:
        """The full argv: `docker run` around `python -m agent_sandbox.coding_agent`."""
        limits = spec.limits
        args = [self.config.docker, "run", "-i", "--rm", "--init", "--pull", "never", "--name", name,
                "--label", f"{LABEL}.app={self.config.app}", "--label", f"{LABEL}.job={spec.job_id}",
                "--label", f"{LABEL}.owner={self.owner}",
                "--user", self.user(), "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m",
                "--cpus", f"{limits.cpu:g}", "--pids-limit", str(limits.max_processes),
                "--mount", f"type=bind,src={spec.workspace.resolve()},dst=/workspace,readonly",
                "--mount", f"type=bind,src={space.outputs},dst=/outputs",
                "--workdir", "/workspace"]
        if space.image is not None:   # the capped filesystem holds /tmp too
            args += ["--mount", f"type=bind,src={space.tmp},dst=/tmp"]
        else:
            args += ["--tmpfs", f"/tmp:rw,nosuid,nodev,exec,size={self.config.tmp_mb}m,mode=1777"]
        # No network: model calls go through the relay on stdin. The opt-in network is
        # user-mode networking attached to the container's namespace (agent_sandbox.netjail).
        args += ["--network", "none"]
        if spec.needs_network:
            args += ["--mount", f"type=bind,src={netjail.resolv_conf()},dst=/etc/resolv.conf,readonly"]
        for key, value in spec.env.items():  # non-secret settings only: secrets go on stdin
            args += ["--env", f"{key}={value}"]
        return args + [self.config.image, "python", "-m", "agent_sandbox.coding_agent",
                       *spec.agent_args(enforced=self.enforcement(space)), "--secrets-from-stdin"]

    def user(self) -> str:
        return self.config.user if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"

    def enforcement(self, space: RunSpace) -> dict[str, str]:
        disk = space.enforcement if space.image is not None else (
            f"{space.enforcement} for /outputs; /tmp is a {self.config.tmp_mb} MB tmpfs")
        return {"max_processes": "docker --pids-limit (cgroup)", "memory_mb": "docker --memory, swap included",
                "cpu": "docker --cpus", "disk_mb": disk}

    def run(self, spec: RunSpec, on_event: EventCallback,
            cancel: threading.Event | None = None) -> RunResult:
        monitor = RunMonitor(spec, on_event, cancel)
        try:
            if not spec.workspace.is_dir():
                raise DockerUnavailable(f"workspace {spec.workspace} does not exist")
            self.check_image()
            uid, _, gid = self.user().partition(":")
            space = RunSpace.create(self.config.scratch_root, f"agent-{spec.job_id}-", spec.limits.disk_mb,
                                    (int(uid), int(gid or uid)), folders=("outputs", "tmp"))
        except (DockerUnavailable, DiskUnavailable, OSError, subprocess.TimeoutExpired) as exc:
            reason = str(exc)
            monitor.emit(ev.ERROR, {"message": reason})
            return RunResult(status=ev.ERROR_STATUS, reason=reason)
        name = f"agent-{re.sub(r'[^a-zA-Z0-9_.-]', '-', spec.job_id)[:40]}-{random.token_hex(4)}"
        try:
            monitor.status("starting", f"starting Docker container {name} from {self.config.image}")
            network: list[netjail.UserNetwork] = []
            try:
                exit_code = monitor.supervise(
                    self.command(spec, name, space), self.cli_env(), lambda proc: self._stop(name, proc),
                    on_start=(lambda proc: self._connect(name, proc, monitor, network)) if spec.needs_network else None)
            finally:
                for n in network:
                    n.stop()
            self.remove(name)  # nothing may still write to /outputs while we collect it
            status, reason = monitor.outcome(exit_code)
            monitor.status("collecting", "collecting outputs")
            log = space.outputs / AGENT_LOG
            if log.is_symlink() or log.is_file():
                # The agent's own copy of its events: every line already reached us live,
                # and as a result it would count against the output limits.
                log.unlink()
            manifest = collect_outputs(DirectorySource(space.outputs), spec.results, spec.limits)
            monitor.result_event(status, reason, manifest)
            return RunResult(status=status, reason=reason, exit_code=exit_code,
                             duration=monitor.duration, manifest=manifest,
                             usage=monitor.usage, summary=monitor.summary)
        finally:
            self.remove(name)  # --rm covers a normal exit; this covers everything else
            space.remove()

    def _connect(self, name: str, proc: subprocess.Popen, monitor: RunMonitor,
                 network: list[netjail.UserNetwork]) -> None:
        """The opt-in network: user-mode networking for the container's namespace once it runs."""
        deadline = time.monotonic() + 30
        pid = 0
        while not pid and proc.poll() is None and time.monotonic() < deadline:
            out = self.cli("inspect", "--format", "{{.State.Pid}}", name, check=False).stdout.strip()
            pid = int(out) if out.isdigit() else 0
            if not pid:
                time.sleep(0.05)
        try:
            if not pid:
                raise netjail.NetworkUnavailable("the container did not start")
            network.append(netjail.UserNetwork(pid))
            network[0].start()
        except netjail.NetworkUnavailable as exc:
            monitor.emit(ev.ERROR, {"message": f"no network for the sandbox: {exc}"})
            monitor.stopped = (ev.ERROR_STATUS, f"the opt-in network could not be set up: {exc}")
            self._stop(name, proc)

    def _stop(self, name: str, proc: subprocess.Popen) -> None:
        """SIGTERM to the agent (it stops its command and reports), SIGKILL after the grace."""
        self.cli("stop", "--time", str(self.config.stop_grace), name, check=False)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the CLI hangs on a gone container: end it ourselves
            proc.kill()


def _cli_problem(args: tuple[str, ...], stderr: str) -> str:
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no answer"
    if "connect" in detail.lower() or "daemon running" in detail.lower():
        return f"the Docker engine is not reachable ({detail}); start it with scripts/docker-engine.sh"
    return f"docker {args[0]} failed: {detail}"
