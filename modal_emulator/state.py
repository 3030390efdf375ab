"""Everything the emulator knows, shared by its gRPC and HTTP sides."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modal_emulator.faults import FaultInjector
from modal_emulator.images import ImageRegistry
from modal_emulator.jail import SandboxLimits
from modal_emulator.ratelimit import TokenBucket
from modal_emulator.sandbox import Sandbox
from modal_emulator.storage import ContentStore
from modal_emulator.volumes import VolumeStore

# What the worker says about a sandbox that has ended (see command_router).
CLOSE, NOT_FOUND, UNREACHABLE = "close", "not_found", "unreachable"
ENDED_TASK_MODES = (CLOSE, NOT_FOUND, UNREACHABLE)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:22]}"


def fake_jwt(**claims) -> str:
    """An unsigned JWT: the client only reads its `exp` to know when to refresh."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'exp': int(time.time()) + 3600, **claims})}.emulator"


@dataclass
class MountRecord:
    mount_id: str
    files: list[tuple[str, str, int]]   # (absolute path in the container, sha256, mode)


@dataclass
class EmulatorState:
    folder: Path
    grpc_url: str = ""                  # where the command router is reached (the same port)
    http_url: str = ""                  # blob and volume block URLs
    faults: FaultInjector = field(default_factory=FaultInjector)
    create_rate: TokenBucket = field(default_factory=TokenBucket)   # sandbox creations per second
    runtime: str = "bwrap"              # what runs new sandboxes: "bwrap" or "docker"
    ended_task: str = CLOSE             # what exec streams and calls get once their sandbox ended
    docker_image: str = ""              # with docker: run this image instead of each definition's build (tests)
    fail_read: str = ""                 # volume files (a glob of their paths) whose block downloads fail
    schedule_delay: float = 0.0         # seconds a new sandbox waits to be scheduled (no task id meanwhile)
    commit_delay: float = 0.0           # seconds a volume's commit at termination lags the sandbox's end
    recording: Any = None               # the replay runtime's recorded agent run (replay.Recording)
    # Each sandbox's own limits where Modal's API sets none (memory: when no hard limit is asked for).
    sandbox_limits: SandboxLimits = field(default_factory=lambda: SandboxLimits(
        memory_mb=8192, cpu=0.0, max_processes=4096, disk_mb=4096))
    apps: dict[tuple[str, str], str] = field(default_factory=dict)   # (environment, name) -> app id
    app_ids: set[str] = field(default_factory=set)
    images: ImageRegistry = field(default_factory=ImageRegistry)
    mounts: dict[str, MountRecord] = field(default_factory=dict)
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    by_task: dict[str, Sandbox] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.content = ContentStore(self.folder)
        self.volumes = VolumeStore(self.folder)
        (self.folder / "sandboxes").mkdir(parents=True, exist_ok=True)

    def mount_files(self, mount_id: str) -> list[tuple[str, Path, int]]:
        """A mount's files: (absolute filename in the container, its content here, mode)."""
        return [(name, self.content.file_path(sha), mode) for name, sha, mode in self.mounts[mount_id].files]

    def forget_ended(self, max_age: float) -> list[str]:
        """Drop sandboxes (and their kept output) that ended more than `max_age` s ago."""
        now = time.monotonic()
        gone = [sb for sb in self.sandboxes.values() if sb.ended_at is not None and now - sb.ended_at > max_age]
        for sb in gone:
            del self.sandboxes[sb.sandbox_id]
            self.by_task.pop(sb.task_id, None)
        return [sb.sandbox_id for sb in gone]

    def summary(self) -> dict:
        """For the admin endpoint: what runs, what ended, what is pending."""
        return {
            "apps": {name: app_id for (_, name), app_id in self.apps.items()},
            "sandboxes": [
                {"sandbox_id": sb.sandbox_id, "app_id": sb.app_id, "tags": sb.tags,
                 "running": sb.running, "scheduled": sb.scheduled, "network": network_policy(sb),
                 "runtime": sb.runtime.name,
                 "volumes": {path: {"id": v.volume_id, "version": v.version} for path, v in sb.volume_mounts.items()},
                 "status": (sb.result and api_status_name(sb.result.status)) or "RUNNING"}
                for sb in self.sandboxes.values()],
            "volumes": sorted(self.volumes.by_id),
            "faults": self.faults.pending(),
            "faults_fired": dict(self.faults.fired),
            "create_rate": self.create_rate.rate,
            "sandbox_limits": asdict(self.sandbox_limits),
            "runtime": self.runtime,
            "ended_task": self.ended_task,
            "behaviour": self.behaviour(),
        }

    def behaviour(self) -> dict:
        """What the emulator does where Modal's timing or failures are not ours to choose."""
        return {"ended_task": self.ended_task, "fail_read": self.fail_read,
                "schedule_delay": self.schedule_delay, "commit_delay": self.commit_delay}


def api_status_name(status: int) -> str:
    from modal_proto import api_pb2
    return api_pb2.GenericResult.GenericStatus.Name(status).removeprefix("GENERIC_STATUS_")


def network_policy(sandbox: Sandbox) -> str:
    """What the sandbox asked for: blocked, open, or allowlist:<domains and cidrs>."""
    from modal_proto import api_pb2
    access = sandbox.definition.network_access
    if sandbox.layout.block_network:
        return "blocked"
    if access.network_access_type == api_pb2.NetworkAccess.ALLOWLIST:
        return "allowlist:" + ",".join([*access.allowed_domains, *access.allowed_cidrs])
    return "open"
