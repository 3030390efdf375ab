"""Start the emulator: one gRPC port (control plane and command router) and
one HTTP port (blobs, volume blocks, admin)."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from aiohttp import web
from grpclib.server import Server
from modal._utils.grpc_utils import custom_detail_codec
from modal_proto import api_grpc, api_pb2, task_command_router_grpc

from agent_sandbox.isolation.jail import privileged
from agent_sandbox.isolation.scratch import leftovers as leftover_spaces
from modal_emulator.command_router import CommandRouter
from modal_emulator.control_plane import ControlPlane
from modal_emulator.docker_runtime import image_available, remove_orphans
from modal_emulator.faults import parse_faults
from modal_emulator.grpc_service import build_service
from modal_emulator.image_builds import DEFAULT_PYTHON_SLIM, DockerBuilder
from modal_emulator.state import EmulatorState

log = logging.getLogger("modal_emulator")
SWEEP_SECONDS = 60
STOP_SECONDS = 10             # shutting down: how long sandboxes get to end before we leave anyway
EPHEMERAL_MAX_SILENCE = 900   # an ephemeral volume whose client stopped heartbeating goes away
ENDED_SANDBOX_KEPT = 600      # an ended sandbox stays queryable this long, then is forgotten


async def choose_runtime(requested: str, python_slim: str, docker_image: str = "") -> str:
    """"auto": Docker when an engine answers and has what images are built on (the
    stand-in for python:3.11-slim-bookworm, or the image named instead), else bubblewrap."""
    if requested not in ("auto", "bwrap", "docker", "replay"):
        raise ValueError(f"unknown runtime {requested!r}; use auto, bwrap, docker or replay")
    if requested != "auto":
        return requested
    base = docker_image or python_slim.format(series=f"{sys.version_info[0]}.{sys.version_info[1]}",
                                              codename="bookworm")
    return "docker" if await image_available(base) else "bwrap"


class Emulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, http_port: int = 0,
                 state_dir: str | Path | None = None, faults: str = "", create_rate: float = 0.0,
                 runtime: str = "auto", docker_image: str = "", python_slim: str = DEFAULT_PYTHON_SLIM):
        self.host, self.port, self.http_port = host, port, http_port
        folder = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="modal-emulator-"))
        self.state = EmulatorState(folder)
        self.state.create_rate.set_rate(create_rate)
        self.state.docker_image = docker_image
        self.state.images.docker_builder = DockerBuilder(python_slim)
        self.state.images.mount_files = self.state.mount_files
        self.requested_runtime = runtime
        for fault in parse_faults(faults):
            self.state.faults.add(fault)
        self._grpc: Server | None = None
        self._http: web.AppRunner | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        from modal_emulator.http_server import make_app

        self.state.runtime = await choose_runtime(self.requested_runtime, self.state.images.docker_builder.python_slim,
                                                  self.state.docker_image)
        if self.state.runtime == "bwrap" and not privileged():
            log.warning("not root: bubblewrap sandboxes run as this user, and their memory, process "
                        "and disk limits are not enforced")
        if self.state.runtime == "docker":
            await remove_orphans()
        # Sandboxes of an emulator killed before it could end them (a reused --state).
        for space in leftover_spaces(self.state.folder / "sandboxes", prefix="sb-"):
            await asyncio.to_thread(space.remove)
        faults = self.state.faults
        self._grpc = Server([
            build_service(api_grpc.ModalClientBase, ControlPlane(self.state), faults),
            build_service(task_command_router_grpc.TaskCommandRouterBase, CommandRouter(self.state), faults),
        ], status_details_codec=custom_detail_codec)   # error details (retry policies) as Modal's server sends them
        await self._grpc.start(self.host, self.port)
        self.port = self._grpc._server.sockets[0].getsockname()[1]
        self._http = web.AppRunner(make_app(self.state), access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.host, self.http_port)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]
        self.state.grpc_url = f"http://{self.host}:{self.port}"
        self.state.http_url = f"http://{self.host}:{self.http_port}"
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Keep a long-running emulator small: expire what Modal would have let go."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            for volume_id in self.state.volumes.expire_ephemeral(EPHEMERAL_MAX_SILENCE):
                log.info("ephemeral volume %s expired", volume_id)
            self.state.forget_ended(ENDED_SANDBOX_KEPT)

    async def stop(self) -> None:
        """End every sandbox at once (their processes killed, no volume commit: nobody
        will read them), then the servers. Bounded: a sandbox that does not end in
        time is left to the kernel and to the next start's sweep."""
        if self._sweeper:
            self._sweeper.cancel()
        if self._grpc:
            self._grpc.close()
        ending = [asyncio.create_task(sandbox.end(api_pb2.GenericResult.GENERIC_STATUS_TERMINATED, 0,
                                                  "emulator shut down", commit=False))
                  for sandbox in list(self.state.sandboxes.values())]
        if ending:
            done, pending = await asyncio.wait(ending, timeout=STOP_SECONDS)
            if pending:
                log.warning("%d sandboxes did not end within %ss of shutdown", len(pending), STOP_SECONDS)
        for volume_id in [v.volume_id for v in self.state.volumes.by_id.values() if v.ephemeral]:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.state.volumes.delete, volume_id), STOP_SECONDS)
            except (TimeoutError, OSError):
                log.warning("ephemeral volume %s not removed at shutdown", volume_id)
        if self._grpc:
            try:
                await asyncio.wait_for(self._grpc.wait_closed(), STOP_SECONDS)
            except TimeoutError:
                pass
        if self._http:
            await self._http.cleanup()
