"""Sandboxes as Docker containers, when an engine is reachable.

One container per sandbox, started from a locally built image (by default the
Docker backend's `agent-sandbox:latest`: Debian, Python and the agent's
packages) with the sandbox's mounts, /tmp and volume copies bound in (they
live on the sandbox's capped disk), its memory, CPU and process limits, and no
network when it is blocked. It runs as the unprivileged sandbox user, without
capabilities or new privileges, on a read-only root filesystem. Execs are
`docker exec` in that container (docker makes each the leader of its own
session, so a timeout can kill its whole process tree); processes an exec
leaves in the background keep running until the sandbox ends, as on Modal.
Ending the sandbox removes the container.

PID 1 only reaps orphans and ignores every signal a command can send it: a
`kill -TERM 1` inside must not end the sandbox. Environment values (secrets
included) go to each exec only, never to PID 1 (whose environ every command
could read), and reach the docker CLI through its own environment (`-e NAME`
without a value), never its command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
from pathlib import Path

from agent_sandbox.isolation import netjail
from agent_sandbox.isolation.cgroups import field_count
from agent_sandbox.isolation.jail import SANDBOX_GID, SANDBOX_UID
from modal_emulator.jail import JailLayout, SandboxLimits, kill_group
from modal_emulator.sandbox import SandboxFinished

log = logging.getLogger("modal_emulator")
OWNER_LABEL = "modal-emulator.pid"   # which emulator process started a container
PIDS = "/run/modal-emulator"   # tmpfs in the container: each exec's process group id
# Note the exec's process (group) id for kill, then become the command.
_WRAPPER = f'echo $$ > {PIDS}/"$0"; exec "$@"'
# PID 1: reap orphans, ignore what commands send (only the host's SIGKILL ends it).
_INIT = ("import os, signal, time\n"
         "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):\n"
         "    signal.signal(s, signal.SIG_IGN)\n"
         "while True:\n"
         "    try:\n"
         "        os.wait()\n"
         "    except ChildProcessError:\n"
         "        time.sleep(1)\n")


def docker_path() -> str:
    return shutil.which("docker") or ""


async def image_available(image: str) -> bool:
    """Whether an engine answers and has `image`."""
    if not docker_path():
        return False
    process = await asyncio.create_subprocess_exec(
        docker_path(), "image", "inspect", image,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(process.wait(), 20) == 0
    except TimeoutError:
        process.kill()
        return False


async def remove_orphans() -> list[str]:
    """Remove containers left by emulator processes that are gone (killed, crashed).

    Containers of emulators still running (another test session) are left alone.
    """
    code, out = await _output([docker_path(), "ps", "--all", "--filter", f"label={OWNER_LABEL}",
                               "--format", f'{{{{.Names}}}} {{{{.Label "{OWNER_LABEL}"}}}}'])
    if code != 0:
        return []
    orphans = []
    for line in out.splitlines():
        name, _, pid = line.partition(" ")
        if pid.isdigit() and not _alive(int(pid)):
            orphans.append(name)
    if orphans:
        await _run([docker_path(), "rm", "--force", *orphans], {})
        log.info("removed %d containers left by a previous emulator", len(orphans))
    return orphans


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ContainerStartError(SandboxFinished):
    """The container did not start: the sandbox is over before it began."""


class DockerRuntime:
    name = "docker"

    def __init__(self, layout: JailLayout, image: str, container: str, limits: SandboxLimits):
        self.layout, self.image, self.container, self.limits = layout, image, container, limits
        self.env: dict[str, str] = {}
        self.network: netjail.UserNetwork | None = None
        self.memory_events: tuple[Path, str] | None = None   # where the container's OOM kills are counted

    async def start(self, env: dict[str, str]) -> None:
        limits = self.limits
        argv = [docker_path(), "run", "--detach", "--rm", "--name", self.container, "--hostname", "modal",
                "--user", f"{SANDBOX_UID}:{SANDBOX_GID}", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--read-only",
                "--tmpfs", f"{PIDS}:size=1m,mode=1777", "--label", f"{OWNER_LABEL}={os.getpid()}",
                "--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m",
                "--pids-limit", str(limits.max_processes)]
        # Never Docker's bridge (it reaches the host): an open network is user-mode
        # networking in the container's own namespace (agent_sandbox.isolation.netjail).
        argv += ["--network", "none"]
        if not self.layout.block_network:
            argv += ["--volume", f"{netjail.resolv_conf()}:/etc/resolv.conf:ro"]
        if limits.cpu:
            argv += ["--cpus", f"{limits.cpu:g}"]
        for child in sorted(self.layout.root_dirs.iterdir()):
            if child.is_dir() and not child.is_symlink():
                argv += ["--volume", f"{child}:/{child.name}"]
        argv += ["--volume", f"{self.layout.tmp}:/tmp"]
        for mount_path, private in sorted(self.layout.volumes.items()):
            argv += ["--volume", f"{private}:{mount_path}"]
        argv += ["--env", f"HOME={env.get('HOME', '/root')}", self.image, "python3", "-c", _INIT]
        code, err = await _run(argv, {})
        if code != 0:
            raise ContainerStartError(f"docker could not start the container: {err.strip()}")
        code, found = await _output([docker_path(), "inspect", "--format", "{{.Id}} {{.State.Pid}}", self.container])
        container_id, _, pid = found.strip().partition(" ")
        self.memory_events = memory_events_file(container_id)
        if not self.layout.block_network:
            try:
                self.network = netjail.UserNetwork(int(pid.strip()))
                await asyncio.to_thread(self.network.start)
            except (ValueError, netjail.NetworkUnavailable) as exc:
                self.network = None
                raise ContainerStartError(f"no network for the container: {exc}") from None
        self.env = env

    async def spawn(self, exec_id: str, args: list[str], workdir: str, env: dict[str, str],
                    stdout: bool, stderr: bool) -> asyncio.subprocess.Process:
        env = {**self.env, **env}
        argv = [docker_path(), "exec", "--interactive", "--workdir", workdir]
        for name in sorted(env):
            argv += ["--env", name]
        argv += [self.container, "sh", "-c", _WRAPPER, exec_id, *args]
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        return await asyncio.create_subprocess_exec(
            *argv, stdin=pipe, stdout=pipe if stdout else devnull, stderr=pipe if stderr else devnull,
            env={**cli_env(), **env}, start_new_session=True)

    async def kill(self, exec_id: str, process: asyncio.subprocess.Process) -> None:
        """Kill the exec's process group inside the container, then its docker CLI."""
        script = f"kill -9 -$(cat {PIDS}/{shlex.quote(exec_id)})"   # dash: a negative pid is a group
        code, err = await _run([docker_path(), "exec", self.container, "sh", "-c", script], {})
        if code != 0:
            log.warning("could not kill exec %s in %s: %s", exec_id, self.container, err.strip())
        kill_group(process)

    async def stop(self) -> None:
        if self.network is not None:
            await asyncio.to_thread(self.network.stop)
            self.network = None
        code, err = await _run([docker_path(), "rm", "--force", self.container], {})
        if code != 0 and "No such container" not in err:
            log.warning("could not remove container %s: %s", self.container, err.strip())

    async def release(self) -> None:
        """The engine held the cgroup; nothing is left once the container is gone."""

    def oom_kills(self) -> int:
        return 0 if self.memory_events is None else field_count(*self.memory_events)


def memory_events_file(container_id: str) -> tuple[Path, str] | None:
    """The file (and key) of the container's memory cgroup that counts its OOM kills."""
    if not container_id:
        return None
    for folder in (f"memory/docker/{container_id}", f"memory/system.slice/docker-{container_id}.scope"):
        if (Path("/sys/fs/cgroup", folder, "memory.oom_control")).exists():   # cgroup v1
            return Path("/sys/fs/cgroup", folder, "memory.oom_control"), "oom_kill"
    for folder in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        if (Path("/sys/fs/cgroup", folder, "memory.events")).exists():   # cgroup v2
            return Path("/sys/fs/cgroup", folder, "memory.events"), "oom_kill"
    log.warning("container %s: its memory cgroup was not found; running out of memory will not end "
                "the sandbox", container_id[:12])
    return None


def cli_env() -> dict[str, str]:
    """What the docker CLI itself needs from our environment (where the engine is)."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY")
    return {k: v for k, v in os.environ.items() if k in keep}


async def _output(argv: list[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=cli_env())
    out, _ = await process.communicate()
    return process.returncode, out.decode(errors="replace")


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env={**cli_env(), **env})
    _, err = await process.communicate()
    return process.returncode, err.decode(errors="replace")
