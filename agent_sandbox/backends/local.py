"""The local backend: the agent in a bubblewrap jail on this machine.

Inside the jail: the workspace read-only at /workspace, a fresh folder at
/outputs, a scratch folder at /tmp, the system's /usr and the Python
environment read-only, the agent_sandbox package at /opt/agent; nothing else
of the host. Own PID, IPC, UTS and network namespaces (model calls go through the host's
relay; the opt-in network is user-mode networking that cannot reach the host,
see agent_sandbox.netjail), all capabilities dropped, killed with its parent.
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

from agent_sandbox import events as ev
from agent_sandbox import netjail
from agent_sandbox.backends import EventCallback
from agent_sandbox.backends.monitor import RunMonitor
from agent_sandbox.outputs import DirectorySource, collect_outputs
from agent_sandbox.spec import RunResult, RunSpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../agent_sandbox
AGENT_ROOT = "/opt/agent"
# Read-only system paths Python and the agent's tools need; absent ones are skipped.
SYSTEM_PATHS = ["/usr", "/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives",
                "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/fonts", "/usr/share/fonts"]
NETWORK_PATHS = ["/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]  # resolv.conf: netjail's own


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


@dataclass
class LocalConfig:
    bwrap: str = field(default_factory=lambda: shutil.which("bwrap") or "")  # path of bubblewrap; "" if missing
    python: str = sys.executable          # the Python that runs the agent inside the jail
    allow_unsandboxed: bool = field(default_factory=lambda: _env_flag("AGENT_SANDBOX_ALLOW_UNSANDBOXED"))  # run without bubblewrap (unsafe)
    scratch_root: str = field(default_factory=lambda: os.environ.get("AGENT_SANDBOX_SCRATCH", tempfile.gettempdir()))  # host folder for per-run /outputs and /tmp
    kill_grace: float = 2.0               # seconds between SIGTERM and SIGKILL when stopping


class SandboxUnavailable(RuntimeError):
    pass


class LocalBackend:
    name = "local"

    def __init__(self, **config):
        self.config = LocalConfig(**config)

    def sweep_orphans(self) -> int:
        # Jails run with --die-with-parent: none outlives the process that started it.
        return 0

    def command(self, spec: RunSpec, outputs: Path, scratch: Path, info_fd: int = -1) -> list[str]:
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
        if spec.needs_network:   # bwrap tells us the jail's pid there: its netns gets user-mode networking
            args += ["--info-fd", str(info_fd), "--ro-bind", str(netjail.resolv_conf()), "/etc/resolv.conf"]
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

    def run(self, spec: RunSpec, on_event: EventCallback,
            cancel: threading.Event | None = None) -> RunResult:
        monitor = RunMonitor(spec, on_event, cancel)
        if not self.config.bwrap and not self.config.allow_unsandboxed:
            reason = ("bubblewrap (bwrap) is not installed; install it, or set "
                      "AGENT_SANDBOX_ALLOW_UNSANDBOXED=1 to run without a sandbox")
            monitor.emit(ev.ERROR, {"message": reason})
            return RunResult(status=ev.ERROR_STATUS, reason=reason)
        if not spec.workspace.is_dir():
            reason = f"workspace {spec.workspace} does not exist"
            monitor.emit(ev.ERROR, {"message": reason})
            return RunResult(status=ev.ERROR_STATUS, reason=reason)
        run_dir = Path(tempfile.mkdtemp(prefix=f"agent-{spec.job_id}-", dir=self.config.scratch_root))
        outputs, scratch = run_dir / "outputs", run_dir / "tmp"
        outputs.mkdir()
        scratch.mkdir()
        try:
            monitor.status("starting", "starting the local sandbox" if self.config.bwrap
                           else "starting WITHOUT a sandbox")
            if not self.config.bwrap:
                monitor.emit(ev.WARNING, {"message": "running without a sandbox: "
                                          "AGENT_SANDBOX_ALLOW_UNSANDBOXED is set and bwrap is missing"})
            if spec.needs_network and self.config.bwrap:
                exit_code = self._supervise_with_network(spec, monitor, outputs, scratch)
            else:
                exit_code = monitor.supervise(self.command(spec, outputs, scratch), self.environment(spec),
                                              self._stop)
            status, reason = monitor.outcome(exit_code)
            monitor.status("collecting", "collecting outputs")
            manifest = collect_outputs(DirectorySource(outputs), spec.results, spec.limits)
            monitor.result_event(status, reason, manifest)
            return RunResult(status=status, reason=reason, exit_code=exit_code,
                             duration=monitor.duration, manifest=manifest,
                         usage=monitor.usage, summary=monitor.summary)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _supervise_with_network(self, spec: RunSpec, monitor: RunMonitor, outputs: Path,
                                scratch: Path) -> int | None:
        """The opt-in network: once bwrap names the jail's pid, its netns gets user-mode networking."""
        info_r, info_w = os.pipe()
        network: list[netjail.UserNetwork] = []

        def connect(proc: subprocess.Popen) -> None:
            os.close(info_w)
            with os.fdopen(info_r) as info:
                pid = _child_pid(info)
            try:
                if pid is None:
                    raise netjail.NetworkUnavailable("bubblewrap did not say which process is the jail")
                network.append(netjail.UserNetwork(pid))
                network[0].start()
            except netjail.NetworkUnavailable as exc:
                monitor.emit(ev.ERROR, {"message": f"no network for the sandbox: {exc}"})
                monitor.stopped = (ev.ERROR_STATUS, f"the opt-in network could not be set up: {exc}")
                self._stop(proc)

        try:
            return monitor.supervise(self.command(spec, outputs, scratch, info_w), self.environment(spec),
                                     self._stop, pass_fds=(info_w,), on_start=connect)
        finally:
            for n in network:
                n.stop()

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


def _child_pid(info) -> int | None:
    """The jail's pid from bubblewrap's --info-fd JSON (written before the agent starts)."""
    import json
    try:
        return int(json.loads(info.read())["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None
