"""Plain HTTP beside the gRPC port: what Modal serves from object storage,
plus the emulator's admin endpoints.

    PUT  /blobs/{id}                          blob upload (answers ETag: "<md5>")
    GET  /blobs/{id}                          blob download
    GET  /volumes/{id}/blocks/{n}/{path}      one 8 MiB block of a volume file
    GET  /emulator/state                      sandboxes, volumes, faults (for tests)
    POST /emulator/faults                     {"rpc", "status", "count", "message", "kind"}
    DELETE /emulator/faults                   clear pending faults
    POST /emulator/limits                     {"create_rate": sandboxes per second, 0 = off,
                                               "sandbox_max_processes", "sandbox_disk_mb",
                                               "sandbox_memory_mb": each new sandbox's own limits}
    POST /emulator/runtime                    {"runtime": "bwrap"|"docker", "docker_image"} for new sandboxes
                                              (docker_image: run it instead of each definition's build; "" none)
    POST /emulator/behaviour                  {"ended_task": "close"|"not_found"|"unreachable"}: what exec
                                              streams and calls get once their sandbox ended (command_router);
                                              {"fail_read": GLOB}: block downloads of matching volume files
                                              fail (HTTP 500); {"schedule_delay": s, "commit_delay": s}
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib

from aiohttp import web

from modal_emulator.control_plane import BLOCK_SIZE
from modal_emulator.faults import Fault
from modal_emulator.state import ENDED_TASK_MODES, EmulatorState


def make_app(state: EmulatorState) -> web.Application:
    async def put_blob(request: web.Request) -> web.Response:
        data = await request.read()
        try:
            await asyncio.to_thread(state.content.put_blob, request.match_info["blob_id"], data)
        except KeyError:
            raise web.HTTPBadRequest(text="bad blob id") from None
        return web.Response(headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def get_blob(request: web.Request) -> web.StreamResponse:
        try:
            path = state.content.blob_path(request.match_info["blob_id"])
        except KeyError:
            path = None
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def get_block(request: web.Request) -> web.Response:
        try:
            volume = state.volumes.get(request.match_info["volume_id"])
            path = volume.regular_file(request.match_info["path"])   # unquoted by aiohttp
        except KeyError:
            raise web.HTTPNotFound() from None
        if state.fail_read and fnmatch.fnmatchcase(request.match_info["path"], state.fail_read):
            raise web.HTTPInternalServerError(text="injected failure (--fail-read)")
        index = int(request.match_info["index"])
        data = await asyncio.to_thread(_read_block, path, index)
        return web.Response(body=data, content_type="application/octet-stream")

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state.summary())

    async def add_fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            fault = Fault(**{k: body[k] for k in ("rpc", "status", "count", "message", "kind") if k in body})
        except (ValueError, TypeError, KeyError) as exc:
            raise web.HTTPBadRequest(text=f"bad fault: {exc}") from None
        state.faults.add(fault)
        return web.json_response({"pending": state.faults.pending()})

    async def set_limits(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if "create_rate" in body:
                state.create_rate.set_rate(float(body["create_rate"]))
            limits = state.sandbox_limits
            for name in ("max_processes", "disk_mb", "memory_mb"):
                if f"sandbox_{name}" in body:
                    value = int(body[f"sandbox_{name}"])
                    if value <= 0:
                        raise ValueError(f"sandbox_{name} must be positive")
                    setattr(limits, name, value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise web.HTTPBadRequest(text=f"bad limits: {exc}") from None
        return web.json_response({"create_rate": state.create_rate.rate, "sandbox_max_processes": limits.max_processes,
                                  "sandbox_disk_mb": limits.disk_mb, "sandbox_memory_mb": limits.memory_mb})

    async def set_runtime(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            runtime, image = body["runtime"], body.get("docker_image", state.docker_image)
        except (ValueError, TypeError, KeyError) as exc:
            raise web.HTTPBadRequest(text=f"bad runtime request: {exc}") from None
        if runtime not in ("bwrap", "docker") or not isinstance(image, str):
            raise web.HTTPBadRequest(text=f"unknown runtime {runtime!r}; use bwrap or docker")
        state.runtime, state.docker_image = runtime, image
        return web.json_response({"runtime": state.runtime, "docker_image": state.docker_image})

    async def set_behaviour(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            changes = _behaviour(body, state)
        except (ValueError, TypeError, AttributeError) as exc:
            raise web.HTTPBadRequest(text=f"bad behaviour request: {exc}") from None
        for name, value in changes.items():
            setattr(state, name, value)
        return web.json_response(state.behaviour())

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"pending": []})

    app = web.Application(client_max_size=1024 ** 3)
    app.router.add_put("/blobs/{blob_id}", put_blob)
    app.router.add_get("/blobs/{blob_id}", get_blob)
    app.router.add_get("/volumes/{volume_id}/blocks/{index:\\d+}/{path:.+}", get_block)
    app.router.add_get("/emulator/state", get_state)
    app.router.add_post("/emulator/faults", add_fault)
    app.router.add_delete("/emulator/faults", clear_faults)
    app.router.add_post("/emulator/limits", set_limits)
    app.router.add_post("/emulator/runtime", set_runtime)
    app.router.add_post("/emulator/behaviour", set_behaviour)
    return app


def _behaviour(body: dict, state: EmulatorState) -> dict:
    """The behaviour changes a request asks for, checked: {attribute: value}."""
    changes = {}
    if "ended_task" in body:
        if body["ended_task"] not in ENDED_TASK_MODES:
            raise ValueError(f"unknown ended_task {body['ended_task']!r}; use one of {ENDED_TASK_MODES}")
        changes["ended_task"] = body["ended_task"]
    if "fail_read" in body:
        if not isinstance(body["fail_read"], str):
            raise ValueError("fail_read is a glob (\"\" for none)")
        changes["fail_read"] = body["fail_read"]
    for name in ("schedule_delay", "commit_delay"):
        if name in body:
            if float(body[name]) < 0:
                raise ValueError(f"{name} must be 0 or more")
            changes[name] = float(body[name])
    return changes


def _read_block(path, index: int) -> bytes:
    """One block, its trailing zero bytes left out as Modal does (the client pads them back)."""
    with open(path, "rb") as f:
        f.seek(index * BLOCK_SIZE)
        return f.read(BLOCK_SIZE).rstrip(b"\0")
