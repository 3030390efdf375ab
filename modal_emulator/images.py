"""Image definitions, and their builds as Modal runs them: the first request
for a definition starts a build whose log the client streams
(ImageJoinStreaming); later requests find it built.

What a build makes depends on the runtime that will run the sandbox:

- bwrap: nothing is downloaded; every image runs on the host's project
  environment (the Python that runs the emulator, with its packages),
  read-only. The build only checks what would fail on Modal in a way our code
  must handle: a `pip install` of a package the environment lacks, or at
  another version than pinned, fails the build (the client raises
  ImageBuildError).
- docker: the definition's recipe is built for real (image_builds.py): a
  local stand-in for the python:slim base, then every layer's commands as
  they are, so a sandbox has exactly what the Modal image would have.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
import re
import shlex
import sys
import uuid
from dataclasses import dataclass, field

from modal_proto import api_pb2

_PIP = re.compile(r"^RUN\s+(?:\S*/)?(?:uv\s+)?(?:python3?\s+-m\s+)?pip\s+install\s+(?P<args>.*)$")
_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?:==([^,;\s]+))?")
_FROM_PYTHON = re.compile(r"^FROM\s+python:(\d+)\.(\d+)")
_COPY_CONTEXT = re.compile(r"^COPY\s+\.\s+(/\S*)$")   # the client's copy of a context mount: COPY . <dest>
IMAGE_BUILDER_VERSION = "2025.06"
log = logging.getLogger("modal_emulator")


@dataclass
class Build:
    """One build of a definition for one runtime: its log as it grows, then its outcome."""

    log: list[str] = field(default_factory=list)
    error: str = ""          # why it failed; empty when it succeeded
    docker_tag: str = ""     # what the docker runtime runs (docker builds only)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    def say(self, line: str) -> None:
        self.log.append(line.rstrip("\n"))
        self.changed.set()

    def finish(self, error: str = "") -> None:
        self.error = error
        if error:
            self.say(f"ERROR: {error}")
        self.done.set()
        self.changed.set()

    def result(self) -> api_pb2.GenericResult:
        if self.error:
            return api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE,
                                         exception=self.error)
        return api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)


@dataclass
class ImageRecord:
    image_id: str
    commands: list[str]
    base_image_ids: list[str] = field(default_factory=list)
    context_files: int = 0
    context_mount_id: str = ""     # the local files a `COPY . <dest>` layer copies (add_local_*(copy=True))
    builds: dict[str, Build] = field(default_factory=dict)   # runtime -> its build

    @property
    def copies_to(self) -> str:
        """Where this layer copies its context mount ("" when it copies none)."""
        for command in self.commands:
            match = _COPY_CONTEXT.match(command.strip())
            if match and self.context_mount_id:
                return match.group(1)
        return ""


class ImageRegistry:
    """Images by id, deduplicated by definition like Modal's build cache."""

    def __init__(self) -> None:
        self.by_id: dict[str, ImageRecord] = {}
        self._by_key: dict[str, str] = {}
        self.docker_builder = None   # image_builds.DockerBuilder, set by the server
        self.mount_files = lambda mount_id: []   # a mount's (filename, content path, mode): set by the server

    def get_or_create(self, image: api_pb2.Image) -> ImageRecord:
        key = hashlib.sha256(image.SerializeToString(deterministic=True)).hexdigest()
        if key in self._by_key:
            return self.by_id[self._by_key[key]]
        record = ImageRecord(image_id=f"im-{uuid.uuid4().hex[:22]}", commands=list(image.dockerfile_commands),
                             base_image_ids=[b.image_id for b in image.base_images],
                             context_files=len(image.context_files), context_mount_id=image.context_mount_id)
        self.by_id[record.image_id] = record
        self._by_key[key] = record.image_id
        return record

    def layers(self, image_id: str) -> list[ImageRecord]:
        """The image and the layers it is built on, base first."""
        chain, record = [], self.by_id.get(image_id)
        while record is not None:
            chain.append(record)
            record = self.by_id.get(record.base_image_ids[0]) if record.base_image_ids else None
        return chain[::-1]

    def build(self, record: ImageRecord, runtime: str) -> Build:
        """The definition's build for `runtime`, started if it was not."""
        return self.start(record, runtime)[0]

    def start(self, record: ImageRecord, runtime: str) -> tuple[Build, bool]:
        """(the build, whether this call started it)."""
        started = runtime not in record.builds
        if started:
            build = record.builds[runtime] = Build()
            if runtime == "docker":
                build.task = asyncio.get_running_loop().create_task(self._docker_build(record, build))
            else:
                check_host_environment(record, build)
        return record.builds[runtime], started

    async def _docker_build(self, record: ImageRecord, build: Build) -> None:
        try:
            parent = ""
            if record.base_image_ids:
                parent_build = self.build(self.by_id[record.base_image_ids[0]], "docker")
                await parent_build.done.wait()
                if parent_build.error:
                    return build.finish(f"its base image failed to build: {parent_build.error}")
                parent = parent_build.docker_tag
            context = self.mount_files(record.context_mount_id) if record.context_mount_id else []
            build.docker_tag = await self.docker_builder.build_layer(record, parent, build.say, context)
            build.finish()
        except Exception as exc:   # ImageBuildFailed, or docker itself
            build.finish(str(exc))


def check_host_environment(record: ImageRecord, build: Build) -> None:
    """A bwrap "build": say what the host stands in for; fail on what is not there."""
    build.say(f"Building image {record.image_id} for bubblewrap sandboxes: they run this host's "
              f"environment (Python {sys.version.split()[0]}); nothing is downloaded")
    warn_if_other_python(record.commands, build)
    error = missing_packages_error(record.commands, build)
    build.finish(error)


def missing_packages_error(commands: list[str], build: Build | None = None) -> str:
    """A build error for `pip install` layers naming packages we do not have (or not
    at the pinned version).

    Only layers on top of a base image count: the base layer of debian_slim
    installs Modal's own build tools (pip, uv), which the host need not have.
    """
    if not commands or commands[0].strip() != "FROM base":
        return ""
    missing = []
    for command in commands:
        match = _PIP.match(command.strip())
        if not match:
            continue
        for arg in shlex.split(match.group("args")):
            requirement = _REQ.match(arg)
            if arg.startswith("-") or not requirement:
                continue
            name, pinned = requirement.groups()
            installed = _installed(name)
            if installed is None or (pinned and installed != pinned):
                missing.append(arg + (f" (this host has {installed})" if installed else ""))
            elif build:
                build.say(f"{arg}: {name} {installed} is in this host's environment")
    if not missing:
        return ""
    return (f"No matching distribution found for {', '.join(missing)} "
            f"(the emulator maps images to its host environment and downloads nothing; "
            f"install them there)")


def warn_if_other_python(commands: list[str], build: Build | None = None) -> None:
    """The host's Python stands in for the image's; say so when they differ."""
    for command in commands:
        match = _FROM_PYTHON.match(command.strip())
        if match and (int(match.group(1)), int(match.group(2))) != sys.version_info[:2]:
            note = (f"image asks for Python {match.group(1)}.{match.group(2)}; "
                    f"sandboxes run the host's {sys.version_info[0]}.{sys.version_info[1]}")
            log.warning(note)
            if build:
                build.say(f"WARNING: {note}")


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def metadata() -> api_pb2.ImageMetadata:
    return api_pb2.ImageMetadata(
        python_version_info=sys.version,
        image_builder_version=IMAGE_BUILDER_VERSION,
        libc_version_info="glibc (host)",
    )
