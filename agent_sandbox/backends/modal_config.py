"""The Modal backend's settings (each reads AGENT_SANDBOX_MODAL_<FIELD>), in a module of their
own so that the backend, its runner and its runs can all read them without importing each other."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import Any, TypedDict

from agent_sandbox import settings
from agent_sandbox.settings import setting


class ModalEnvironment(TypedDict, total=False):
    """The keyword arguments that pick the Modal environment (none: the client's default)."""

    environment_name: str


@dataclass
class ModalConfig:
    """Settings of the Modal backend: each reads AGENT_SANDBOX_MODAL_<FIELD>."""

    app_name: str = setting("AGENT_SANDBOX_MODAL_APP_NAME", "sandbox-environment",
                            "Modal app the sandboxes run under")
    environment: str = setting("AGENT_SANDBOX_MODAL_ENVIRONMENT", "", "Modal environment",
                               shown="client default")
    python_version: str = setting("AGENT_SANDBOX_MODAL_PYTHON_VERSION",
                                  f"{sys.version_info.major}.{sys.version_info.minor}",
                                  "Python of the image", shown="host's (3.11)")
    extra_packages: list[str] = setting("AGENT_SANDBOX_MODAL_EXTRA_PACKAGES", [],
                                        "extra pip packages (comma or space separated)", shown="none")
    outbound_domains: list[str] = setting("AGENT_SANDBOX_MODAL_OUTBOUND_DOMAINS", [],
                                          "domain allowlist when the opt-in network is on (without it: "
                                          "every public IPv4 range, no private ones)",
                                          shown="none (public ranges)")
    timeout_margin: float = setting("AGENT_SANDBOX_MODAL_TIMEOUT_MARGIN", 60.0,
                                    "seconds Modal's own limits exceed ours, so ours fire first")
    create_attempts: int = setting("AGENT_SANDBOX_MODAL_CREATE_ATTEMPTS", 4,
                                   "tries to create the sandbox on transient errors")
    retry_delay: float = setting("AGENT_SANDBOX_MODAL_RETRY_DELAY", 1.0,
                                 "first backoff in seconds, doubling")
    terminate_wait: float = setting("AGENT_SANDBOX_MODAL_TERMINATE_WAIT", 60.0,
                                    "seconds to wait for the sandbox (and volume sync) to end")
    owner: str = setting("AGENT_SANDBOX_MODAL_OWNER", factory=socket.gethostname, shown="hostname",
                         doc="owner tag; `sweep_orphans()` only touches its own sandboxes")
    max_throttle_wait: int = setting("AGENT_SANDBOX_MODAL_MAX_THROTTLE_WAIT", 60,
                                     "seconds the client may wait out Modal's rate limits in one call before "
                                     "it gives up and our retries take over (sets `MODAL_MAX_THROTTLE_WAIT` "
                                     "unless that is set)")

    create_concurrency: int = setting("AGENT_SANDBOX_MODAL_CREATE_CONCURRENCY", 8,
                                      "sandboxes being created at once by one process, each uploading its job's "
                                      "workspace (the client hashes it in a pool of its own); the rest wait",
                                      above=0)
    download_concurrency: int = setting("AGENT_SANDBOX_MODAL_DOWNLOAD_CONCURRENCY", 8,
                                        "jobs whose outputs are being downloaded at once (one thread each)",
                                        above=0)
    sync_wait: float = setting("AGENT_SANDBOX_MODAL_SYNC_WAIT", 60.0,
                               "seconds the volume may take to show the outputs once the sandbox ended "
                               "(Modal syncs at termination, with no promise of timing)")
    sync_settle: float = setting("AGENT_SANDBOX_MODAL_SYNC_SETTLE", 2.0,
                                 "seconds the listing must stay unchanged to count as synced when the agent "
                                 "did not say how many files it left")

    @classmethod
    def from_env(cls, **overrides: Any) -> ModalConfig:
        return settings.load(cls, **overrides)
