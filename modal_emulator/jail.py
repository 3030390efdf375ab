"""The bubblewrap runtime: a sandbox's processes in the local backend's jail.

Each exec is its own jail (agent_sandbox.isolation.jail, the same jail as the local
backend), but all execs of one sandbox share its writable folders (the
image's mounts such as /workspace and /root, /tmp, and the private copies of
its volumes), its cgroup and its disk, so they see one filesystem and one set
of limits as in a container. The image is the host's project environment,
read-only: /usr, the few /etc files Python needs and the Python prefix that
runs the emulator. As root, the jail runs as the unprivileged sandbox user.
Each exec has its own network namespace: empty when the sandbox blocks the
network, else user-mode networking that reaches the internet but never the
host or private addresses (agent_sandbox.isolation.netjail; bubblewrap holds the command
until it is up).

The exec's environment (secrets included) reaches bubblewrap in an unlinked
file (--args), and the command itself is PID 1 of its jail: no process a
command can see holds another's environment in its memory or command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox.isolation import netjail
from agent_sandbox.isolation.cgroups import CgroupUnavailable, RunCgroup
from agent_sandbox.isolation.jail import Jail, make_stage, privileged, remove_stage
from agent_sandbox.process_group import signal_group

log = logging.getLogger("modal_emulator")
SYSTEM_DIRS = ("usr", "bin", "lib", "lib32", "lib64", "sbin", "etc")   # never taken from an image's mounts


def image_path_env() -> str:
    return f"{sys.prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class SandboxLimits:
    """What the emulator holds one sandbox to (Modal's own limits, as we emulate them)."""

    memory_mb: int
    cpu: float          # cores; 0: no quota
    max_processes: int
    disk_mb: int


@dataclass
class JailLayout:
    """Host folders that back one sandbox's writable filesystem."""

    root_dirs: Path                  # each entry is bound read-write at /<name> (e.g. workspace, root)
    tmp: Path                        # bound at /tmp
    volumes: dict[str, Path] = field(default_factory=dict)  # mount path -> private copy
    block_network: bool = False

    def jail(self, workdir: str, env: dict[str, str], cgroup: RunCgroup | None, stage: Path | None) -> Jail:
        jail = Jail(env=env, workdir=workdir or "/", network=not self.block_network, hostname="modal",
                    cgroup=cgroup, stage=stage).system()
        # Mount layers first, so the Python prefix (which may live under /root,
        # e.g. pyenv) is bound on top of them rather than hidden by them; /tmp
        # before it too (a Python environment under /tmp, a clone there).
        for child in sorted(self.root_dirs.iterdir()):
            if child.is_dir() and not child.is_symlink():
                jail.bind(child, "/" + child.name, writable=True)
        jail.bind(self.tmp, "/tmp", writable=True).python()
        for mount_path, private in sorted(self.volumes.items()):
            jail.bind(private, mount_path, writable=True)
        return jail


class BwrapRuntime:
    """Runs a sandbox's execs as bubblewrap jails over its JailLayout, in one cgroup."""

    name = "bwrap"

    def __init__(self, layout: JailLayout, limits: SandboxLimits, sandbox_id: str = ""):
        self.layout, self.limits, self.sandbox_id = layout, limits, sandbox_id
        self.env: dict[str, str] = {}
        self.cgroup: RunCgroup | None = None
        self.stage: Path | None = None
        self._networks: set[asyncio.Task] = set()   # each exec's network, ended with it

    async def start(self, env: dict[str, str]) -> None:
        """Nothing runs until the first exec; `env` is the container's environment."""
        # What the image's own ENV would set (python:slim's PATH and LANG), from this host.
        self.env = {"PATH": image_path_env(), "LANG": "C.UTF-8", **env}
        if privileged():
            try:
                self.cgroup = RunCgroup.create(self.sandbox_id, self.limits.memory_mb,
                                               self.limits.max_processes, self.limits.cpu)
            except CgroupUnavailable as exc:
                log.warning("sandbox %s: memory, process and CPU limits not enforced: %s", self.sandbox_id, exc)
            self.stage = make_stage()

    async def spawn(self, exec_id: str, args: list[str], workdir: str, env: dict[str, str],
                    stdout: bool, stderr: bool) -> asyncio.subprocess.Process:
        jail = self.layout.jail(workdir, {**self.env, **env}, self.cgroup, self.stage)
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        fd = jail.write_options()
        try:
            process = await asyncio.create_subprocess_exec(
                *jail.command(args, fd), pass_fds=jail.pass_fds(fd),
                stdin=pipe, stdout=pipe if stdout else devnull, stderr=pipe if stderr else devnull,
                env={}, start_new_session=True)
        except BaseException:
            if jail.fence is not None:
                jail.fence.close()
            raise
        finally:
            os.close(fd)
        if jail.fence is not None:
            try:
                await asyncio.to_thread(jail.fence.connect)
            except netjail.NetworkUnavailable as exc:
                log.warning("sandbox %s: no network for an exec: %s", self.sandbox_id, exc)
                kill_group(process)
            self._networks.add(asyncio.create_task(_close_after(process, jail.fence)))
        return process

    async def kill(self, exec_id: str, process: asyncio.subprocess.Process) -> None:
        kill_group(process)

    async def stop(self) -> None:
        """Kill every process of the sandbox, whatever it started (the cgroup holds them all)."""
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.kill)

    def oom_kills(self) -> int:
        return self.cgroup.counters()["oom_kills"] if self.cgroup is not None else 0

    async def release(self) -> None:
        """Once its processes are gone: remove the cgroup and the stage."""
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove)
        remove_stage(self.stage)


async def _close_after(process: asyncio.subprocess.Process, fence: netjail.JailNetwork) -> None:
    await process.wait()
    await asyncio.to_thread(fence.close)


def kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None and process.pid > 0:  # its own session: its group holds all it started
        signal_group(process.pid, signal.SIGKILL)

