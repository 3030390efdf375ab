"""Failures injected on request, so the client's and our backend's error paths
run against the real `modal` client.

A fault says: the next `count` calls of `rpc` fail with gRPC `status` (for
example SandboxCreateV2 with UNAVAILABLE, which the client retries, or
RESOURCE_EXHAUSTED, which it does not). Kind "build_failure" on
ImageGetOrCreate instead answers with a failed build (-> ImageBuildError).
Kind "skipped_commit" on the pseudo-RPC VolumeCommit makes the next sandbox
that ends keep its volumes as they were (its writes are lost, as when Modal
does not sync a volume). Faults are added through the admin HTTP endpoint (POST /emulator/faults) or at
start-up with MODAL_EMULATOR_FAULTS="SandboxCreateV2:UNAVAILABLE:2,...".
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from grpclib import Status

GRPC_ERROR = "grpc_error"
BUILD_FAILURE = "build_failure"
LOST_REPLY = "lost_reply"   # the call takes effect, then the client gets the error status
SKIPPED_COMMIT = "skipped_commit"   # rpc "VolumeCommit": a sandbox ends without committing its volumes
KINDS = (GRPC_ERROR, BUILD_FAILURE, LOST_REPLY, SKIPPED_COMMIT)


@dataclass
class Fault:
    rpc: str
    status: str = "UNAVAILABLE"   # a grpclib.Status name, for kind grpc_error
    count: int = 1                # how many calls fail; -1 = every call until cleared
    message: str = "injected fault"
    kind: str = GRPC_ERROR

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {KINDS}")
        if self.kind in (GRPC_ERROR, LOST_REPLY) and self.status not in Status.__members__:
            raise ValueError(f"unknown gRPC status {self.status!r}")
        if not self.rpc:
            raise ValueError("a fault needs an rpc name")

    @property
    def grpc_status(self) -> Status:
        return Status[self.status]


class FaultInjector:
    """Pending faults by RPC name; each matching call consumes one."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: dict[str, int] = {}

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, rpc: str, kind: str = GRPC_ERROR) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.rpc == rpc and fault.kind == kind:
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            self._pending.remove(fault)
                    self.fired[rpc] = self.fired.get(rpc, 0) + 1
                    return fault
        return None

    def pending(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._pending]


def parse_faults(spec: str) -> list[Fault]:
    """`RPC:STATUS:COUNT[,...]`, e.g. "SandboxCreateV2:UNAVAILABLE:2"."""
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        rpc, _, rest = item.partition(":")
        status, _, count = rest.partition(":")
        if status in (BUILD_FAILURE, SKIPPED_COMMIT):
            faults.append(Fault(rpc=rpc, kind=status, count=int(count or 1)))
        else:
            faults.append(Fault(rpc=rpc, status=status or "UNAVAILABLE", count=int(count or 1)))
    return faults
