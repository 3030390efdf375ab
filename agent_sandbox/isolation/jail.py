"""The bubblewrap jail: what a sandbox sees and who it runs as.

One jail for the local backend and for the Modal emulator's bubblewrap
runtime. Inside: the system's /usr and a few files of /etc read-only, the
folders its owner binds (read-only or writable), its own /proc with /proc/sys
read-only, a minimal /dev, and nothing else of the host. Every namespace is
its own (the network too: the opt-in network is user-mode networking that
cannot reach the host, agent_sandbox.isolation.netjail), no capabilities, the command is PID 1
(no bubblewrap process inside whose memory could hold the environment; and
the agent, not dumpable, keeps its pipe to the host out of reach of commands
writing to /proc/1/fd/1), and it dies with the process that started it:
bubblewrap's --die-with-parent, the launcher's own parent-death signal, and
the agent's lifeline (lifeline.py), which ends the jail once nobody reads its
output, even when the starter died before any parent-death signal was set.

Who it runs as. bubblewrap started by root maps root inside to root outside,
and host root may write sysctls whatever its capabilities. So when we are
root the jail is started by launch.py, which joins the run's cgroups,
binds the folders the sandbox user could not reach onto a "stage" it can
(in a mount namespace of its own), and becomes SANDBOX_UID before bubblewrap
runs. Without root, bubblewrap runs as the calling user, as it always has.

bubblewrap's options (the environment included) go in through an unlinked
file (--args FD), never its command line or environment, which host users
could read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox.isolation import hostfiles, netjail
from agent_sandbox.isolation.cgroups import RunCgroup
from agent_sandbox.isolation.owners import process_alive

SANDBOX_UID = SANDBOX_GID = 10001   # the Docker image's user too
LAUNCHER = Path(__file__).with_name("launch.py")
# Read-only system paths Python and the tools need; absent ones are skipped.
SYSTEM_PATHS = ["/usr", "/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives",
                "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/fonts", "/usr/share/fonts"]
NETWORK_PATHS = ["/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]  # resolv.conf: netjail's
TOP_DIRS = ("bin", "lib", "lib32", "lib64", "sbin")


def bwrap_path() -> str:
    """Where bubblewrap is ("" if it is not installed)."""
    return shutil.which("bwrap") or ""


def privileged() -> bool:
    return os.geteuid() == 0


def python_prefixes(python: str = sys.executable) -> list[str]:
    """The folders an interpreter needs: its environment and the Python it was made from."""
    exe = Path(python)
    found = {sys.base_prefix, sys.prefix, str(exe.parent.parent), str(exe.resolve().parent.parent)}
    return sorted(p for p in found if p != "/usr" and not p.startswith("/usr/"))


@dataclass
class Bind:
    source: str
    dest: str
    writable: bool = False
    optional: bool = False   # skipped when the source does not exist
    staged: bool = True      # as root: reached through the stage (system paths need not be)
    symlink: bool = False    # not a bind: a symlink at dest pointing to source


@dataclass
class Jail:
    env: dict[str, str]
    workdir: str = "/"
    network: bool = False
    hostname: str = "sandbox"
    cgroup: RunCgroup | None = None    # joined before the jail starts (root only)
    stage: Path | None = None          # from make_stage(); required as root
    uid: int = SANDBOX_UID             # as root: the host uid (and gid) the jail runs as
    binds: list[Bind] = field(default_factory=list)
    fence: netjail.JailNetwork | None = None   # the opt-in network (made when `network`)

    def __post_init__(self) -> None:
        if self.network:
            self.fence = netjail.JailNetwork()

    def bind(self, source: str | Path, dest: str, writable: bool = False, optional: bool = False) -> Jail:
        self.binds.append(Bind(str(source), dest, writable, optional))
        return self

    def system(self) -> Jail:
        """The read-only system: /usr, /bin & co (links kept as links), the /etc files Python needs."""
        for top in TOP_DIRS:
            path = "/" + top
            if os.path.islink(path):
                self.binds.append(Bind(os.readlink(path), path, staged=False, symlink=True))
            elif os.path.isdir(path):
                self.binds.append(Bind(path, path, staged=False))
        for path in SYSTEM_PATHS + (NETWORK_PATHS if self.network else []):
            self.binds.append(Bind(path, path, optional=True, staged=False))
        if self.network:   # the user-mode network's resolver
            self.binds.append(Bind(str(netjail.resolv_conf()), "/etc/resolv.conf", staged=False))
        return self

    def python(self, python: str = sys.executable) -> Jail:
        for prefix in python_prefixes(python):
            self.bind(prefix, prefix, optional=True)
        return self

    # -- starting it ----------------------------------------------------------
    def options(self) -> list[str]:
        """bubblewrap's options, for --args."""
        # --disable-userns: no user namespace inside (their count is the kernel's, per uid and shared).
        opts = ["--die-with-parent", "--new-session", "--as-pid-1",
                "--unshare-user", "--disable-userns", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
                "--unshare-net", "--cap-drop", "ALL", "--hostname", self.hostname,
                "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev", "--clearenv"]
        if self.fence is not None:
            opts += self.fence.options()
        for name, value in sorted(self.env.items()):
            opts += ["--setenv", name, value]
        for index, bind in enumerate(self.binds):
            if bind.symlink:
                opts += ["--symlink", bind.source, bind.dest]
                continue
            if bind.optional and not os.path.exists(bind.source):
                continue
            source = str(self._staged_path(index)) if self._is_staged(bind) else bind.source
            opts += ["--bind" if bind.writable else "--ro-bind", source, bind.dest]
        if self.cgroup and self.cgroup.paths:   # read-only: the agent reads what the limits are and did
            for controller in ("memory", "pids", "cpu"):
                if controller in self.cgroup.paths:
                    opts += ["--ro-bind", str(self.cgroup.paths[controller]), f"/sys/fs/cgroup/{controller}"]
        # The jail's own root (a tmpfs bubblewrap made) read-only: only the binds are writable.
        return opts + ["--remount-ro", "/", "--chdir", self.workdir]

    def command(self, argv: list[str], args_fd: int) -> list[str]:
        """The command to start the jail running `argv`; `args_fd` holds write_options()."""
        bwrap = [bwrap_path(), "--args", str(args_fd), "--", *argv]
        if not privileged():
            return bwrap
        plan = {"uid": self.uid, "gid": self.uid, "parent": os.getpid(),
                "cgroups": self.cgroup.procs_files() if self.cgroup else [],
                "stage": [[b.source, str(self._staged_path(i))] for i, b in enumerate(self.binds)
                          if self._is_staged(b) and os.path.exists(b.source)]}
        for _, target in plan["stage"]:
            os.makedirs(target, mode=0o755, exist_ok=True)
        return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(plan), *bwrap]

    def pass_fds(self, args_fd: int) -> tuple[int, ...]:
        """Descriptors the jail's process must get: the options, and the network's pipes."""
        return (args_fd, *(self.fence.fds if self.fence is not None else ()))

    def write_options(self) -> int:
        """An unlinked file holding the options (NUL-separated, as --args reads them); caller closes it."""
        options = self.options()
        if any("\0" in option for option in options):
            raise ValueError("a NUL byte in a jail option")
        with tempfile.TemporaryFile() as f:
            f.write(b"".join(option.encode() + b"\0" for option in options))
            f.flush()
            fd = os.dup(f.fileno())
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _is_staged(self, bind: Bind) -> bool:
        return privileged() and bind.staged and not bind.symlink

    def _staged_path(self, index: int) -> Path:
        if self.stage is None:
            raise ValueError("a jail started by root needs a stage (make_stage)")
        return self.stage / str(index)


def make_stage() -> Path:
    """An empty folder the sandbox user can pass through, for one jail owner's binds.

    The binds onto it exist only in each launcher's own mount namespace: on the
    host it stays a tree of empty folders (remove it with remove_stage)."""
    # In a folder that is ours alone: someone else could swap what the jail sees.
    stage = Path(tempfile.mkdtemp(prefix=f"stage-{os.getpid()}-", dir=hostfiles.private_root()))
    os.chmod(stage, 0o711)
    return stage


def leftover_stages() -> list[Path]:
    """Stages of processes that are gone (named stage-<pid>-...)."""
    found = []
    for root in hostfiles.ROOTS:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            pid = name.split("-")[1] if name.count("-") >= 2 else ""
            if pid.isdigit() and not process_alive(f"{socket.gethostname()}:{pid}"):
                found.append(Path(root, name))
    return found


def remove_stage(stage: Path | None) -> None:
    """rmdir only: on the host a stage holds nothing but empty folders."""
    if stage is None:
        return
    for child in stage.iterdir() if stage.exists() else ():
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        stage.rmdir()
    except OSError:
        pass
