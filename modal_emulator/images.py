"""What an image definition maps to here.

The emulator cannot download anything, so it does not build images: every
image runs on the host's project environment (the Python that runs the
emulator, with its packages), read-only inside the jail, or with the Docker
runtime on one prebuilt local image (docker_runtime). What it does check is
what would make a real build fail in a way our code must handle: a
`pip install` of a package that is not in that environment ends the "build"
with a failure (the client raises ImageBuildError), as a missing package would
on Modal.
"""

from __future__ import annotations

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
_REQ_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
IMAGE_BUILDER_VERSION = "2025.06"
log = logging.getLogger("modal_emulator")


@dataclass
class ImageRecord:
    image_id: str
    commands: list[str]
    base_image_ids: list[str] = field(default_factory=list)
    error: str = ""   # why the "build" failed; empty when it succeeded


class ImageRegistry:
    """Images by id, deduplicated by definition like Modal's build cache."""

    def __init__(self) -> None:
        self.by_id: dict[str, ImageRecord] = {}
        self._by_key: dict[str, str] = {}

    def get_or_create(self, image: api_pb2.Image) -> ImageRecord:
        key = hashlib.sha256(image.SerializeToString(deterministic=True)).hexdigest()
        if key in self._by_key:
            return self.by_id[self._by_key[key]]
        record = ImageRecord(
            image_id=f"im-{uuid.uuid4().hex[:22]}",
            commands=list(image.dockerfile_commands),
            base_image_ids=[b.image_id for b in image.base_images],
        )
        record.error = missing_packages_error(record.commands)
        warn_if_other_python(record.commands)
        self.by_id[record.image_id] = record
        self._by_key[key] = record.image_id
        return record


def missing_packages_error(commands: list[str]) -> str:
    """A build error for `pip install` layers naming packages we do not have.

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
            if arg.startswith("-"):
                continue
            name = _REQ_NAME.match(arg)
            if name and not _installed(name.group(1)):
                missing.append(arg)
    if not missing:
        return ""
    return (f"ERROR: No matching distribution found for {', '.join(missing)} "
            f"(the emulator maps images to its host environment and downloads nothing; "
            f"install them there)")


_FROM_PYTHON = re.compile(r"^FROM\s+python:(\d+)\.(\d+)")


def warn_if_other_python(commands: list[str]) -> None:
    """The host's Python stands in for the image's; say so when they differ."""
    for command in commands:
        match = _FROM_PYTHON.match(command.strip())
        if match and (int(match.group(1)), int(match.group(2))) != sys.version_info[:2]:
            log.warning("image asks for Python %s.%s; sandboxes run the host's %d.%d",
                        match.group(1), match.group(2), *sys.version_info[:2])


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def metadata() -> api_pb2.ImageMetadata:
    return api_pb2.ImageMetadata(
        python_version_info=sys.version,
        image_builder_version=IMAGE_BUILDER_VERSION,
        libc_version_info="glibc (host)",
    )
