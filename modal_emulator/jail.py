"""The bubblewrap jail a sandbox's processes run in.

Each exec is its own bwrap process, but all execs of one sandbox share its
writable folders (the image's mounts such as /workspace and /root, /tmp, and
the private copies of its volumes), so they see one filesystem as in a
container. The image is the host's project environment, read-only: the system
folders and the Python prefix that runs the emulator. Every exec has its own
network namespace: empty when the sandbox blocks the network, else given
user-mode networking that reaches the internet but never the host or private
addresses (agent_sandbox.netjail; bwrap holds the command until it is up).
Capabilities are dropped. Killing the
bwrap process kills everything inside (--die-with-parent plus a PID namespace).

The process environment (secrets included) is handed to bwrap as --setenv
options read from a file descriptor (--args), never as bwrap's own
environment or command line: bwrap's init is PID 1 in the jail and its
/proc/1/environ and /proc/1/cmdline are readable by every process there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox import netjail

log = logging.getLogger("modal_emulator")
SYSTEM_DIRS = ("usr", "bin", "lib", "lib32", "lib64", "sbin", "etc")


def python_prefixes() -> list[str]:
    """The interpreter and environment that stand in for the image's Python."""
    prefixes = []
    for prefix in (sys.base_prefix, sys.prefix):
        if prefix not in prefixes and not prefix.startswith("/usr/"):
            prefixes.append(prefix)
    return prefixes


def image_path_env() -> str:
    return f"{sys.prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def bwrap_path() -> str:
    """Where bubblewrap is ("" if it is not installed)."""
    return shutil.which("bwrap") or ""


@dataclass
class JailLayout:
    """Host folders that back one sandbox's writable filesystem."""

    root_dirs: Path                  # each entry is bound read-write at /<name> (e.g. workspace, root)
    tmp: Path                        # bound at /tmp
    volumes: dict[str, Path] = field(default_factory=dict)  # mount path -> private copy
    block_network: bool = False

    def options(self, workdir: str, env: dict[str, str]) -> list[str]:
        """bwrap's options (to pass with --args FD), without the command."""
        argv = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--hostname", "modal", "--cap-drop", "ALL",
                "--proc", "/proc", "--dev", "/dev", "--clearenv"]
        for name, value in sorted(env.items()):
            argv += ["--setenv", name, value]
        argv.append("--unshare-net")
        for top in SYSTEM_DIRS:
            path = "/" + top
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        # Mount layers first, so the Python prefix (which may live under /root,
        # e.g. pyenv) is bound on top of them rather than hidden by them.
        for child in sorted(self.root_dirs.iterdir()):
            if child.is_dir() and not child.is_symlink():
                argv += ["--bind", str(child), "/" + child.name]
        # /tmp before the prefixes too: a Python environment under /tmp (a clone
        # there) must be bound on top of the sandbox's /tmp, not hidden by it.
        argv += ["--bind", str(self.tmp), "/tmp"]
        for prefix in python_prefixes():
            argv += ["--ro-bind", prefix, prefix]
        for mount_path, private in sorted(self.volumes.items()):
            argv += ["--bind", str(private), mount_path]
        if not self.block_network:   # the resolver of the user-mode network, over the host's /etc
            argv += ["--ro-bind", str(netjail.resolv_conf()), "/etc/resolv.conf"]
        argv += ["--chdir", workdir or "/"]
        return argv


def encode_options(options: list[str]) -> bytes:
    """The NUL-separated form bwrap's --args reads."""
    if any("\0" in option for option in options):
        raise ValueError("a NUL byte in a jail option")
    return b"".join(option.encode() + b"\0" for option in options)


class BwrapRuntime:
    """Runs a sandbox's execs as bubblewrap jails over its JailLayout."""

    name = "bwrap"

    def __init__(self, layout: JailLayout):
        self.layout = layout
        self.env: dict[str, str] = {}
        self._networks: list[asyncio.Task] = []

    async def start(self, env: dict[str, str]) -> None:
        """Nothing runs until the first exec; `env` is the container's environment."""
        self.env = {"PATH": image_path_env(), **env}

    async def spawn(self, exec_id: str, args: list[str], workdir: str, env: dict[str, str],
                    stdout: bool, stderr: bool) -> asyncio.subprocess.Process:
        options = self.layout.options(workdir, {**self.env, **env})
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        fences = () if self.layout.block_network else (os.pipe(), os.pipe())  # (info, block)
        if fences:   # bwrap names the jail's pid, then waits for its network before the command
            options = ["--info-fd", str(fences[0][1]), "--block-fd", str(fences[1][0]), *options]
        with tempfile.TemporaryFile() as args_file:
            args_file.write(encode_options(options))
            args_file.seek(0)
            fd = args_file.fileno()
            try:
                process = await asyncio.create_subprocess_exec(
                    bwrap_path(), "--args", str(fd), "--", *args,
                    pass_fds=(fd, fences[0][1], fences[1][0]) if fences else (fd,),
                    stdin=pipe, stdout=pipe if stdout else devnull, stderr=pipe if stderr else devnull,
                    env={}, start_new_session=True)   # bwrap's own environ is visible as /proc/1/environ
            finally:
                for pair, theirs in zip(fences, (1, 0)):
                    os.close(pair[theirs])
        if fences:
            await self._connect(process, info=fences[0][0], block=fences[1][1])
        return process

    async def _connect(self, process: asyncio.subprocess.Process, info: int, block: int) -> None:
        """User-mode networking for the exec's namespace; the command starts once it is up."""
        network = None
        try:
            with os.fdopen(info) as f:
                pid = int(json.loads(await asyncio.to_thread(f.read))["child-pid"])
            network = netjail.UserNetwork(pid)
            await asyncio.to_thread(network.start)
            os.write(block, b"1")
        except (OSError, ValueError, KeyError, netjail.NetworkUnavailable) as exc:
            log.warning("no network for an exec: %s", exc)
            kill_group(process)
            if network is not None:
                network.stop()
            network = None
        finally:
            os.close(block)
        if network is not None:
            self._networks.append(asyncio.create_task(_stop_with(process, network)))

    async def kill(self, exec_id: str, process: asyncio.subprocess.Process) -> None:
        kill_group(process)

    async def stop(self) -> None:
        """Execs are killed one by one; nothing else to stop."""


async def _stop_with(process: asyncio.subprocess.Process, network: "netjail.UserNetwork") -> None:
    await process.wait()
    await asyncio.to_thread(network.stop)


def kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        try:  # started in its own session: its group holds everything it started
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
