"""The local backend: the agent in a bubblewrap jail on this machine.

Inside the jail: the workspace read-only at /workspace, a fresh folder at
/outputs, a scratch folder at /tmp, the system's /usr and the Python
environment read-only, the agent_sandbox package at /opt/agent; nothing else
of the host. Own PID, IPC, UTS and network namespaces (network only when the
model needs an API), all capabilities dropped, killed with its parent.
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
from agent_sandbox.backends.monitor import RunMonitor, SandboxBackend
from agent_sandbox.backends.sandbox import ProcessSandbox, SandboxError, Streams
from agent_sandbox.events import Status
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.process_group import end_group
from agent_sandbox.settings import setting
from agent_sandbox.spec import RunSpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../agent_sandbox
AGENT_ROOT = "/opt/agent"
# Read-only system paths Python and the agent's tools need; absent ones are skipped.
SYSTEM_PATHS = ["/usr", "/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives",
                "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/fonts", "/usr/share/fonts"]
NETWORK_PATHS = ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]


@dataclass
class LocalConfig:
    bwrap: str = setting(None, factory=lambda: shutil.which("bwrap") or "",
                         doc="path of bubblewrap; empty if missing")
    python: str = setting(None, sys.executable, "the Python that runs the agent inside the jail")
    allow_unsandboxed: bool = setting("AGENT_SANDBOX_ALLOW_UNSANDBOXED", False,
                                      "let the local backend run without bubblewrap (unsafe; every run warns)",
                                      shown="off")
    scratch_root: str = setting("AGENT_SANDBOX_SCRATCH", factory=tempfile.gettempdir, shown="system temp",
                                doc="where the local and Docker backends keep each run's `/outputs` and `/tmp`")
    kill_grace: float = setting(None, 2.0, "seconds between SIGTERM and SIGKILL when stopping")


class LocalBackend(SandboxBackend):
    name = "local"

    def __init__(self, **config):
        self.config = settings.load(LocalConfig, **config)

    def sandbox(self, spec: RunSpec) -> LocalSandbox:
        return LocalSandbox(self, spec)

    def sweep_orphans(self) -> int:
        # Jails run with --die-with-parent: none outlives the process that started it.
        return 0

    def command(self, spec: RunSpec, outputs: Path, scratch: Path) -> list[str]:
        """The full argv: bubblewrap around `python -m agent_sandbox.coding_agent`."""
        agent = [self.config.python, "-m", "agent_sandbox.coding_agent", *spec.agent_args(),
                 "--secrets-from-stdin"]
        if not self.config.bwrap:
            return [self.config.python, "-m", "agent_sandbox.coding_agent",
                    *spec.agent_args(str(spec.workspace), str(outputs)), "--secrets-from-stdin"]
        # --as-pid-1: the agent (not dumpable) is PID 1, so no command can reach the
        # pipe to the host through /proc/1/fd/1 and write events of its own there.
        args = [self.config.bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--as-pid-1",
                "--cap-drop", "ALL", "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev"]
        if spec.needs_network:
            args.append("--share-net")
        # /tmp first: the Python environment may live under /tmp (a clone there)
        # and must be bound on top of the scratch folder, not hidden by it.
        args += ["--bind", str(scratch), "/tmp"]
        for top in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{top}"):
                args += ["--symlink", os.readlink(f"/{top}"), f"/{top}"]
            elif os.path.isdir(f"/{top}"):
                args += ["--ro-bind", f"/{top}", f"/{top}"]
        paths = SYSTEM_PATHS + (NETWORK_PATHS if spec.needs_network else [])
        python = Path(self.config.python)
        paths += sorted({sys.base_prefix, sys.prefix, str(python.parent.parent),
                         str(python.resolve().parent.parent)})
        for path in paths:
            args += ["--ro-bind-try", path, path]
        args += ["--ro-bind", str(PACKAGE_DIR), f"{AGENT_ROOT}/agent_sandbox",
                 "--ro-bind", str(spec.workspace), "/workspace",
                 "--bind", str(outputs), "/outputs",
                 "--chdir", "/workspace", "--"]
        return args + agent

    def environment(self, spec: RunSpec) -> dict[str, str]:
        """The jail's whole environment: nothing inherited from the host but what is listed."""
        env = {"PATH": f"{Path(self.config.python).parent}:/usr/local/bin:/usr/bin:/bin",
               "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "PYTHONPATH": AGENT_ROOT if self.config.bwrap else str(PACKAGE_DIR.parent),
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
               "MPLCONFIGDIR": "/tmp/matplotlib"}
        env.update(spec.env)  # secrets go on stdin instead: bwrap's own environ is readable in the jail
        return env



class LocalSandbox(ProcessSandbox):
    """One run: the jail's /outputs and /tmp in a scratch folder, the agent under bwrap."""

    def __init__(self, backend: LocalBackend, spec: RunSpec):
        self.backend, self.config, self.spec = backend, backend.config, spec
        self.run_dir: Path | None = None

    def create(self, run: RunMonitor) -> None:
        if not self.config.bwrap and not self.config.allow_unsandboxed:
            raise SandboxError("bubblewrap (bwrap) is not installed; install it, or set "
                               "AGENT_SANDBOX_ALLOW_UNSANDBOXED=1 to run without a sandbox")
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"agent-{self.spec.job_id}-", dir=self.config.scratch_root))
        (self.run_dir / "outputs").mkdir()
        (self.run_dir / "tmp").mkdir()
        run.status(Status.STARTING, "starting the local sandbox" if self.config.bwrap
                   else "starting WITHOUT a sandbox")
        if not self.config.bwrap:
            run.emit(ev.WARNING, {"message": "running without a sandbox: "
                                             "AGENT_SANDBOX_ALLOW_UNSANDBOXED is set and bwrap is missing"})

    def start(self, run: RunMonitor) -> Streams:
        return self.spawn(self.backend.command(self.spec, self.run_dir / "outputs", self.run_dir / "tmp"),
                          self.backend.environment(self.spec))

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL; the PID namespace takes every child with it."""
        end_group(self.proc, self.config.kill_grace)

    def outputs(self) -> DirectorySource:
        return DirectorySource(self.run_dir / "outputs")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
