"""Sandboxes as Docker containers, when an engine is reachable.

One container per sandbox, started from a locally built image (by default the
Docker backend's `agent-sandbox:latest`: Debian, Python and the agent's
packages) with the sandbox's mounts, /tmp and volume copies bound in, the
sandbox's CPU and memory limits, and no network when it is blocked. Execs are
`docker exec` in that container, each in its own session so a timeout can kill
its whole process tree; processes an exec leaves in the background keep
running until the sandbox ends, as on Modal. Ending the sandbox removes the
container.

Environment values (secrets included) reach the docker CLI through its own
environment (`-e NAME` without a value), never its command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil

from agent_sandbox import netjail
from modal_emulator.jail import JailLayout, kill_group
from modal_emulator.sandbox import SandboxFinished

log = logging.getLogger("modal_emulator")
# The Docker backend's image (AGENT_SANDBOX_DOCKER_IMAGE names another one, as for that backend).
DEFAULT_IMAGE = os.environ.get("AGENT_SANDBOX_DOCKER_IMAGE") or "agent-sandbox:latest"
OWNER_LABEL = "modal-emulator.pid"   # which emulator process started a container
PIDS = "/run/modal-emulator"   # tmpfs in the container: each exec's process group id
# Run the command in a new session (its pgid = its pid), noting that id for kill.
_WRAPPER = f'echo $$ > {PIDS}/"$0"; exec "$@"'


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
    except asyncio.TimeoutError:
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

    def __init__(self, layout: JailLayout, image: str, container: str,
                 cpu: float = 0.0, memory_mb: int = 0):
        self.layout, self.image, self.container = layout, image, container
        self.cpu, self.memory_mb = cpu, memory_mb
        self.network: netjail.UserNetwork | None = None

    async def start(self, env: dict[str, str]) -> None:
        argv = [docker_path(), "run", "--detach", "--rm", "--init", "--name", self.container,
                "--hostname", "modal", "--user", "0", "--tmpfs", PIDS,
                "--label", f"{OWNER_LABEL}={os.getpid()}"]
        # Never Docker's bridge (it reaches the host): an open network is user-mode
        # networking in the container's own namespace (agent_sandbox.netjail).
        argv += ["--network", "none"]
        if not self.layout.block_network:
            argv += ["--volume", f"{netjail.resolv_conf()}:/etc/resolv.conf:ro"]
        if self.cpu:
            argv += ["--cpus", f"{self.cpu:g}"]
        if self.memory_mb:
            argv += ["--memory", f"{self.memory_mb}m"]
        for child in sorted(self.layout.root_dirs.iterdir()):
            if child.is_dir() and not child.is_symlink():
                argv += ["--volume", f"{child}:/{child.name}"]
        argv += ["--volume", f"{self.layout.tmp}:/tmp"]
        for mount_path, private in sorted(self.layout.volumes.items()):
            argv += ["--volume", f"{private}:{mount_path}"]
        for name in sorted(env):
            argv += ["--env", name]
        argv += [self.image, "sleep", "infinity"]
        code, err = await _run(argv, env)
        if code != 0:
            raise ContainerStartError(f"docker could not start the container: {err.strip()}")
        if not self.layout.block_network:
            code, pid = await _output([docker_path(), "inspect", "--format", "{{.State.Pid}}", self.container])
            try:
                self.network = netjail.UserNetwork(int(pid.strip()))
                await asyncio.to_thread(self.network.start)
            except (ValueError, netjail.NetworkUnavailable) as exc:
                self.network = None
                raise ContainerStartError(f"no network for the container: {exc}") from None

    async def spawn(self, exec_id: str, args: list[str], workdir: str, env: dict[str, str],
                    stdout: bool, stderr: bool) -> asyncio.subprocess.Process:
        argv = [docker_path(), "exec", "--interactive", "--workdir", workdir]
        for name in sorted(env):
            argv += ["--env", name]
        argv += [self.container, "setsid", "--wait", "sh", "-c", _WRAPPER, exec_id, *args]
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        return await asyncio.create_subprocess_exec(
            *argv, stdin=pipe, stdout=pipe if stdout else devnull, stderr=pipe if stderr else devnull,
            env={**_cli_env(), **env}, start_new_session=True)

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


def _cli_env() -> dict[str, str]:
    """What the docker CLI itself needs from our environment (where the engine is)."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY")
    return {k: v for k, v in os.environ.items() if k in keep}


async def _output(argv: list[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=_cli_env())
    out, _ = await process.communicate()
    return process.returncode, out.decode(errors="replace")


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env={**_cli_env(), **env})
    _, err = await process.communicate()
    return process.returncode, err.decode(errors="replace")
