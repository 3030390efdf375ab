"""The control-plane RPCs (service modal.client.ModalClient) the flow uses.

Apps, environments, images, mounts, blobs, volumes and sandboxes. Handler
names are the RPC names; grpc_service.build_service wires them up. Unknown
ids raise KeyError, which becomes NOT_FOUND. Every status code here is one the
client does not retry unless the failure really is transient.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path, PurePosixPath

from google.protobuf import empty_pb2
from grpclib import GRPCError, Status
from modal_proto import api_pb2

from agent_sandbox.isolation.jail import SANDBOX_GID, SANDBOX_UID, bwrap_path, privileged
from agent_sandbox.isolation.scratch import DiskUnavailable, RunSpace
from agent_sandbox.tree import walk
from modal_emulator import images
from modal_emulator.docker_runtime import DockerRuntime
from modal_emulator.image_rpcs import ImageRPCs
from modal_emulator.jail import SYSTEM_DIRS, BwrapRuntime, JailLayout, SandboxLimits
from modal_emulator.replay import ReplayRuntime
from modal_emulator.sandbox import Runtime, Sandbox
from modal_emulator.state import EmulatorState, MountRecord, fake_jwt, network_policy, new_id
from modal_emulator.volumes import MAX_TREE_DEPTH, copy_tree

log = logging.getLogger("modal_emulator")

BLOCK_SIZE = 8 * 1024 * 1024      # modal/_utils/blob_utils.py BLOCK_SIZE
MAX_TIMEOUT_SECS = 24 * 3600      # Modal's limit for a sandbox's lifetime
LIST_PAGE_SIZE = 100
SPACE_FOLDERS = ("fs", "tmp", "volumes")   # a sandbox's writable folders: image mounts, /tmp, volume copies


def plain_space(scratch_root: Path, prefix: str, disk_mb: int, owner: tuple[int, int] | None,
                folders: tuple[str, ...]) -> RunSpace:
    """A sandbox's folder without a filesystem of its own (the replay runtime: nothing writes but us)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root))
    space = RunSpace(folder, folder / "data", enforcement="not enforced: nothing runs (replay)")
    for name in folders:
        (space.data / name).mkdir(parents=True)
    return space


def give_to_sandbox_user(folder: Path) -> None:
    """chown what the emulator just wrote (mount files, volume copies) to the sandbox user."""
    for found in walk(folder, MAX_TREE_DEPTH, 10_000_000):
        if not found.problem:
            os.chown(found.name, SANDBOX_UID, SANDBOX_GID, dir_fd=found.parent_fd, follow_symlinks=False)


class ControlPlane(ImageRPCs):
    def __init__(self, state: EmulatorState):
        self.state = state

    # -- session -------------------------------------------------------------
    async def ClientHello(self, request):
        return api_pb2.ClientHelloResponse()

    async def AuthTokenGet(self, request):
        return api_pb2.AuthTokenGetResponse(token=fake_jwt(sub="emulator"))

    async def EnvironmentGetOrCreate(self, request):
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id="en-emulator",
            metadata=api_pb2.EnvironmentMetadata(
                name=request.deployment_name or "main",
                settings=api_pb2.EnvironmentSettings(image_builder_version=images.IMAGE_BUILDER_VERSION)))

    async def AppGetOrCreate(self, request):
        key = (request.environment_name or "main", request.app_name)
        if key not in self.state.apps:
            if request.object_creation_type not in (
                    api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
                    api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS):
                raise GRPCError(Status.NOT_FOUND, f"App '{request.app_name}' not found")
            app_id = new_id("ap")
            self.state.apps[key] = app_id
            self.state.app_ids.add(app_id)
        return api_pb2.AppGetOrCreateResponse(app_id=self.state.apps[key])

    # -- mounts and blobs ----------------------------------------------------
    async def MountBatchedCheckExistence(self, request):
        missing = [h for h in request.sha256_hex_hashes if not self.state.content.has_file(h)]
        return api_pb2.MountBatchedCheckExistenceResponse(missing_sha256_hex_hashes=missing)

    async def MountPutFile(self, request):
        content = self.state.content
        which = request.WhichOneof("data_oneof")
        if which == "data":
            stored = await asyncio.to_thread(content.put_file, request.sha256_hex, request.data)
        elif which == "data_blob_id":
            stored = await asyncio.to_thread(content.put_file_from_blob, request.sha256_hex, request.data_blob_id)
        else:
            stored = content.has_file(request.sha256_hex)
        if which and not stored:
            raise GRPCError(Status.INVALID_ARGUMENT, f"content does not match sha256 {request.sha256_hex}")
        return api_pb2.MountPutFileResponse(exists=stored)

    async def MountGetOrCreate(self, request):
        files = []
        for f in request.files:
            if not self.state.content.has_file(f.sha256_hex):
                raise GRPCError(Status.FAILED_PRECONDITION, f"file {f.filename} was not uploaded")
            files.append((f.filename, f.sha256_hex, f.mode))
        mount_id = new_id("mo")
        self.state.mounts[mount_id] = MountRecord(mount_id, files)
        return api_pb2.MountGetOrCreateResponse(
            mount_id=mount_id, handle_metadata=api_pb2.MountHandleMetadata(content_checksum_sha256_hex=""))

    async def BlobCreate(self, request):
        blob_id = new_id("bl")
        # The 1.6 client reads the list form (blob_ids, upload_urls.items).
        return api_pb2.BlobCreateResponse(
            blob_ids=[blob_id],
            upload_urls=api_pb2.UploadUrlList(items=[f"{self.state.http_url}/blobs/{blob_id}"]))

    async def BlobGet(self, request):
        if self.state.content.blob_path(request.blob_id) is None:
            raise KeyError(request.blob_id)
        return api_pb2.BlobGetResponse(download_url=f"{self.state.http_url}/blobs/{request.blob_id}")

    # -- volumes -------------------------------------------------------------
    async def VolumeGetOrCreate(self, request):
        ephemeral = request.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL
        create = ephemeral or request.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING
        # Modal's default is still v1 (v2 is opt-in), and the client lists each version
        # with its own RPC: a backend that forgets to ask for v2 gets v1 here too.
        wanted = 2 if request.version == api_pb2.VOLUME_FS_VERSION_V2 else 1
        try:
            volume = self.state.volumes.get_or_create(request.deployment_name, ephemeral, create, wanted)
        except KeyError:
            raise GRPCError(Status.NOT_FOUND, f"Volume '{request.deployment_name}' not found") from None
        if request.version and wanted != volume.version:
            raise GRPCError(Status.FAILED_PRECONDITION,
                            f"Volume '{volume.name}' has version v{volume.version}, not v{wanted}")
        version = api_pb2.VOLUME_FS_VERSION_V2 if volume.version == 2 else api_pb2.VOLUME_FS_VERSION_V1
        return api_pb2.VolumeGetOrCreateResponse(
            volume_id=volume.volume_id, version=version,
            metadata=api_pb2.VolumeMetadata(version=version, name=volume.name))

    async def VolumeHeartbeat(self, request):
        self.state.volumes.get(request.volume_id).last_heartbeat = time.monotonic()
        return empty_pb2.Empty()

    async def VolumeDelete(self, request):
        self.state.volumes.delete(request.volume_id)
        return empty_pb2.Empty()

    async def VolumeListFiles(self, request):
        """The v1 listing (the client uses it for v1 volumes)."""
        for entries in await self._list_volume(request, 1):
            yield api_pb2.VolumeListFilesResponse(entries=entries)

    async def VolumeListFiles2(self, request):
        for entries in await self._list_volume(request, 2):
            yield api_pb2.VolumeListFiles2Response(entries=entries)

    async def _list_volume(self, request, version: int) -> list[list[api_pb2.FileEntry]]:
        volume = self.state.volumes.get(request.volume_id)
        if volume.version != version:
            raise GRPCError(Status.FAILED_PRECONDITION,
                            f"Volume {volume.volume_id} is v{volume.version}: list it with the v{volume.version} call")
        try:
            entries = await asyncio.to_thread(volume.list, request.path or "/", request.recursive)
        except KeyError:
            raise GRPCError(Status.NOT_FOUND, f"No such file or directory: {request.path}") from None
        if request.max_entries:
            entries = entries[:request.max_entries]
        return [entries[start:start + LIST_PAGE_SIZE] for start in range(0, len(entries), LIST_PAGE_SIZE)]

    async def VolumeGetFile2(self, request):
        volume = self.state.volumes.get(request.volume_id)
        try:
            path = volume.regular_file(request.path)
        except KeyError:
            raise GRPCError(Status.NOT_FOUND, f"No such file: {request.path}") from None
        size = path.stat().st_size
        start = request.start
        length = request.len or max(size - start, 0)
        length = max(0, min(length, size - start))
        blocks = range(start // BLOCK_SIZE, -(-(start + length) // BLOCK_SIZE)) if length else range(0)
        # Quoted: a name with "?", "#" or "%" is a path, not a query or a fragment (Modal's URLs are opaque).
        rel = urllib.parse.quote(path.relative_to(volume.root).as_posix())
        urls = [f"{self.state.http_url}/volumes/{volume.volume_id}/blocks/{i}/{rel}" for i in blocks]
        return api_pb2.VolumeGetFile2Response(get_urls=urls, size=size, start=start, len=length)

    # -- sandboxes -----------------------------------------------------------
    async def SandboxCreateV2(self, request):
        definition = request.definition
        self._validate(request)
        runtime = self.state.runtime
        # Built for this runtime (it may have been built for another one, or be building still).
        build = self.state.images.build(self.state.images.by_id[definition.image_id], runtime)
        await build.done.wait()
        if build.error:
            raise GRPCError(Status.FAILED_PRECONDITION, f"Image {definition.image_id} failed to build: {build.error}")
        wait = self.state.create_rate.wait_needed()
        if wait:   # with the retry policy the client reads: it waits that long and retries by itself
            raise GRPCError(Status.RESOURCE_EXHAUSTED, "Sandbox creation rate limit exceeded; retry later",
                            [api_pb2.RPCRetryPolicy(retry_after_secs=wait)])
        sandbox_id = f"sb-{uuid.uuid4().hex}"            # not the 22-char V1 shape -> V2
        task_id = f"ta-{uuid.uuid4().hex[:21]}V"          # "V" marks a V2 task for the client
        # What `COPY . <dest>` layers put in the image, then the mounts (/root must stay writable, so
        # even the Docker runtime binds it: the copied files are laid out with the mounts').
        copies = [(record.copies_to, self.state.mounts[record.context_mount_id])
                  for record in self.state.images.layers(definition.image_id) if record.copies_to]
        mounts = copies + [("/", self.state.mounts[m]) for m in definition.mount_ids]
        volume_mounts = {vm.mount_path: self.state.volumes.get(vm.volume_id) for vm in definition.volume_mounts}
        limits = self._limits(definition)
        replay = runtime == "replay"   # nothing runs: a plain folder, no image mounts
        try:
            space = await asyncio.to_thread(plain_space if replay else RunSpace.create, self.state.folder / "sandboxes",
                                            f"{sandbox_id}-", limits.disk_mb,
                                            (SANDBOX_UID, SANDBOX_GID) if privileged() else None, SPACE_FOLDERS)
        except DiskUnavailable as exc:
            raise GRPCError(Status.RESOURCE_EXHAUSTED, f"no room for the sandbox's disk: {exc}") from None
        try:
            layout = await asyncio.to_thread(self._prepare_folder, space, [] if replay else mounts, volume_mounts,
                                             not replay)
        except BaseException:
            await asyncio.to_thread(space.remove)
            raise
        layout.block_network = (definition.block_network or definition.network_access.network_access_type
                                == api_pb2.NetworkAccess.BLOCKED)
        env: dict[str, str] = {}
        for source in request.secret_sources:
            if source.WhichOneof("source") == "env":
                env.update(source.env.contents)
            elif source.secret_id:
                raise GRPCError(Status.NOT_FOUND, f"Secret {source.secret_id} not found (only inline secrets)")
        sandbox = Sandbox(
            sandbox_id=sandbox_id, task_id=task_id, app_id=request.app_id, definition=definition,
            tags={t.tag_name: t.tag_value for t in request.tags}, env=env, space=space,
            layout=layout, runtime=self._runtime(runtime, layout, sandbox_id, limits, build.docker_tag),
            volume_mounts=volume_mounts, faults=self.state.faults, schedule_delay=self.state.schedule_delay,
            commit_delay=self.state.commit_delay, disk_mb=limits.disk_mb)
        self.state.sandboxes[sandbox_id] = sandbox
        self.state.by_task[task_id] = sandbox
        sandbox.start()
        log.info("sandbox %s created: app=%s timeout=%ss workdir=%s network=%s volumes=%s",
                 sandbox_id, request.app_id, definition.timeout_secs, definition.workdir or "/",
                 network_policy(sandbox), sorted(volume_mounts))
        if network_policy(sandbox).startswith("allowlist"):
            log.warning("sandbox %s: outbound allowlists are not enforced here; it reaches the internet "
                        "(never the host or private addresses)", sandbox_id)
        return api_pb2.SandboxCreateV2Response(
            sandbox_id=sandbox_id, task_id="" if sandbox.schedule_delay else task_id,   # not scheduled yet
            command_router_access=api_pb2.CommandRouterAccess(
                url=self.state.grpc_url, jwt=fake_jwt(task_id=task_id)),
            metadata=api_pb2.SandboxHandleMetadata(app_id=request.app_id))

    def _runtime(self, runtime: str, layout: JailLayout, sandbox_id: str, limits: SandboxLimits,
                 docker_tag: str) -> Runtime:
        if runtime == "replay":
            return ReplayRuntime(self.state.recording, layout.volumes.get("/outputs"))
        if runtime == "docker":   # the image built from the definition, unless a test names one
            return DockerRuntime(layout, self.state.docker_image or docker_tag, f"modal-emulator-{sandbox_id}",
                                 limits)
        return BwrapRuntime(layout, limits, sandbox_id)

    def _limits(self, definition: api_pb2.Sandbox) -> SandboxLimits:
        """Hard limits only from the definition's limit fields, as on Modal: a bare `cpu` or
        `memory` is a request, which a sandbox may exceed (memory up to the machine, which
        the emulator's own cap stands for; CPU to Modal's soft limit of request + 16 cores,
        which is no quota on this machine). The emulator's own limits for the rest (Modal
        takes no process count or disk size for Sandboxes)."""
        resources, own = definition.resources, self.state.sandbox_limits
        return SandboxLimits(memory_mb=resources.memory_mb_max or max(resources.memory_mb, own.memory_mb),
                             cpu=resources.milli_cpu_max / 1000,
                             max_processes=own.max_processes, disk_mb=own.disk_mb)

    def _validate(self, request) -> None:
        d = request.definition
        if request.app_id not in self.state.app_ids:
            raise GRPCError(Status.NOT_FOUND, f"App {request.app_id} not found")
        if d.image_id not in self.state.images.by_id:
            raise GRPCError(Status.NOT_FOUND, f"Image {d.image_id} not found")
        if d.timeout_secs > MAX_TIMEOUT_SECS:
            raise GRPCError(Status.INVALID_ARGUMENT, f"timeout must be at most {MAX_TIMEOUT_SECS}s")
        if d.workdir and not d.workdir.startswith("/"):
            raise GRPCError(Status.INVALID_ARGUMENT, "workdir must be an absolute path")
        for mount_id in d.mount_ids:
            if mount_id not in self.state.mounts:
                raise GRPCError(Status.NOT_FOUND, f"Mount {mount_id} not found")
        for vm in d.volume_mounts:
            if vm.volume_id not in self.state.volumes.by_id:
                raise GRPCError(Status.NOT_FOUND, f"Volume {vm.volume_id} not found")
            if not vm.mount_path.startswith("/") or vm.mount_path.rstrip("/") in ("", "/tmp"):
                raise GRPCError(Status.INVALID_ARGUMENT, f"bad volume mount path {vm.mount_path}")
        if self.state.runtime == "bwrap" and not bwrap_path():
            raise GRPCError(Status.FAILED_PRECONDITION, "the emulator needs bubblewrap (bwrap) to run sandboxes")

    def _prepare_folder(self, space: RunSpace, mounts: list[tuple[str, MountRecord]], volume_mounts: dict,
                        for_processes: bool = True) -> JailLayout:
        """Materialise the image's mounts and copy the volumes in (runs in a thread); given to the
        sandbox user when processes will run there."""
        layout = JailLayout(root_dirs=space.data / "fs", tmp=space.data / "tmp")
        (layout.root_dirs / "root").mkdir()
        for destination, mount in mounts:
            for filename, sha, mode in mount.files:
                parts = PurePosixPath(destination, filename.lstrip("/")).parts[1:]
                if len(parts) < 2 or ".." in parts or parts[0] in SYSTEM_DIRS or parts[0] in ("proc", "dev", "tmp"):
                    log.warning("mount file %s is outside what the emulator maps; skipped", filename)
                    continue
                dest = layout.root_dirs.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(self.state.content.file_path(sha), "rb") as src, open(dest, "wb") as out:
                    while chunk := src.read(1024 * 1024):
                        out.write(chunk)
                os.chmod(dest, (mode & 0o7777) or 0o644)
        for index, (mount_path, volume) in enumerate(sorted(volume_mounts.items())):
            private = space.data / "volumes" / str(index)
            copy_tree(volume.root, private)
            layout.volumes[mount_path] = private
        if privileged() and for_processes:   # the sandbox user may write its whole filesystem, as root may on Modal
            give_to_sandbox_user(space.data)
        return layout

    async def SandboxGetTaskIdV2(self, request):
        sandbox = self.state.sandboxes[request.sandbox_id]
        if not sandbox.running and sandbox.result is not None:
            return api_pb2.SandboxGetTaskIdResponse(task_result=sandbox.result)
        if not sandbox.scheduled:   # no worker yet: the client asks again
            return api_pb2.SandboxGetTaskIdResponse()
        return api_pb2.SandboxGetTaskIdResponse(task_id=sandbox.task_id)

    async def SandboxGetCommandRouterAccess(self, request):
        sandbox = (self.state.sandboxes[request.sandbox_id] if request.sandbox_id
                   else self.state.by_task[request.task_id])
        if not sandbox.running:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox.sandbox_id} has finished")
        return api_pb2.SandboxGetCommandRouterAccessResponse(
            url=self.state.grpc_url, jwt=fake_jwt(task_id=sandbox.task_id))

    async def SandboxWaitV2(self, request):
        sandbox = self.state.sandboxes[request.sandbox_id]
        if request.timeout > 0:
            try:
                await asyncio.wait_for(sandbox.finished.wait(), request.timeout)
            except TimeoutError:
                pass
        return api_pb2.SandboxWaitResponse(
            result=sandbox.result if sandbox.finished.is_set() else api_pb2.GenericResult(),
            metadata=api_pb2.SandboxHandleMetadata(app_id=sandbox.app_id))

    async def SandboxTerminateV2(self, request):
        sandbox = self.state.sandboxes[request.sandbox_id]
        # Like Modal, terminate returns at once; wait() reports the end (volumes committed).
        sandbox.end_soon(api_pb2.GenericResult.GENERIC_STATUS_TERMINATED, 0, "Sandbox terminated")
        return api_pb2.SandboxTerminateResponse()

    async def SandboxListV2(self, request):
        wanted = {t.tag_name: t.tag_value for t in request.tags}
        found = [sb for sb in self.state.sandboxes.values()
                 if (not request.app_id or sb.app_id == request.app_id)
                 and (request.include_finished or sb.running)
                 and all(sb.tags.get(k) == v for k, v in wanted.items())
                 and (not request.before_timestamp or sb.created_at < request.before_timestamp)]
        found.sort(key=lambda sb: sb.created_at, reverse=True)
        return api_pb2.SandboxListResponse(sandboxes=[self._info(sb) for sb in found[:LIST_PAGE_SIZE]])

    @staticmethod
    def _info(sb: Sandbox) -> api_pb2.SandboxInfo:
        return api_pb2.SandboxInfo(
            id=sb.sandbox_id, created_at=sb.created_at, app_id=sb.app_id, image_id=sb.definition.image_id,
            tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sorted(sb.tags.items())],
            timeout_secs=sb.definition.timeout_secs,
            task_info=api_pb2.TaskInfo(id=sb.task_id, started_at=sb.created_at, sandbox_id=sb.sandbox_id,
                                       result=sb.result or api_pb2.GenericResult()),
            metadata=api_pb2.SandboxHandleMetadata(app_id=sb.app_id))

    async def SandboxTagsGetV2(self, request):
        sandbox = self.state.sandboxes[request.sandbox_id]
        return api_pb2.SandboxTagsGetResponse(
            tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sorted(sandbox.tags.items())])
