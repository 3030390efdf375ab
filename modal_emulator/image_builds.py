"""Real builds of Modal image definitions, for the Docker runtime.

Each layer of a definition becomes a local Docker image built from that
layer's own commands, exactly as the client sent them, on top of its base
layer's image. Only the first line of the root layer changes: Docker Hub's
`FROM python:3.11.x-slim-bookworm` (debian_slim's base) is not reachable from
here, so a local stand-in built from the same Debian release takes its place
(docker/python-slim.Dockerfile; `--python-slim` names it). Everything after
(apt-get, pip install of the pinned packages, ...) runs for real, from the
Debian and PyPI mirrors: a package the recipe lacks is missing in the
sandbox, as on Modal.

A `COPY . <dest>` layer (the client's `add_local_*(copy=True)`) is built with
its context mount's files in the build context. Layers are tagged by content
(their base image's id, their commands and the files they copy), so a
definition is built once per machine; later builds are a lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from modal_emulator.docker_runtime import cli_env, docker_path

TAG_REPO = "modal-emulator-image"
# FROM python:<major>.<minor>[.<patch>]-slim-<codename>: debian_slim's base.
_FROM_SLIM = re.compile(r"^FROM\s+python:(\d+\.\d+)(?:\.\d+)?-slim-(\w+)\s*$")
DEFAULT_PYTHON_SLIM = "agent-sandbox-python:{series}-slim-{codename}"
BUILD_TIMEOUT = 1800


class ImageBuildFailed(Exception):
    pass


class DockerBuilder:
    def __init__(self, python_slim: str = DEFAULT_PYTHON_SLIM):
        self.python_slim = python_slim
        self._locks: dict[str, asyncio.Lock] = {}

    async def build_layer(self, record, parent_tag: str, say: Callable[[str], None],
                          context: list[tuple[str, Path, int]] = ()) -> str:
        """Build (or find) the layer `record` on `parent_tag` ("" for a root layer); its tag.
        `context`: the files its `COPY . <dest>` copies, as (absolute filename, content, mode)."""
        if record.context_files:
            raise ImageBuildFailed("layers with inline context files are not supported here")
        commands = [c.strip() for c in record.commands if c.strip()]
        if parent_tag:
            if not commands or commands[0] != "FROM base":
                raise ImageBuildFailed(f"a layer on a base image must start with FROM base: {commands[:1]}")
            commands[0] = f"FROM {parent_tag}"
        else:
            commands[0] = f"FROM {await self._stand_in(commands[0] if commands else '', say)}"
        base_id = await _image_id(commands[0].split(None, 1)[1])
        copied = [f"{name} {path.name} {mode:o}" for name, path, mode in sorted(context)]   # content-addressed names
        digest = hashlib.sha256("\n".join([base_id, *commands[1:], *copied]).encode()).hexdigest()[:16]
        tag = f"{TAG_REPO}:{digest}"
        async with self._locks.setdefault(tag, asyncio.Lock()):
            if await _image_id(tag):
                say(f"=> {tag}: built before, nothing to do")
                return tag
            say(f"=> building layer {record.image_id} as {tag}")
            await _docker_build(commands, tag, say, context)
        return tag

    async def _stand_in(self, first: str, say: Callable[[str], None]) -> str:
        match = _FROM_SLIM.match(first)
        if not match:
            raise ImageBuildFailed(f"the emulator builds only images based on debian_slim; not {first!r}")
        series, codename = match.groups()
        local = self.python_slim.format(series=series, codename=codename)
        if not await _image_id(local):
            raise ImageBuildFailed(f"no local stand-in {local} for {first.split()[1]} (scripts/docker-engine.sh "
                                   f"builds it from docker/python-slim.Dockerfile)")
        say(f"=> {first.split()[1]} is {local} here (Docker Hub is not reachable)")
        return local


def _write_context(context: Path, files: list[tuple[str, Path, int]]) -> None:
    """The files a `COPY . <dest>` layer copies, laid out as the mount has them."""
    for name, content, mode in files:
        parts = PurePosixPath(name).parts[1:]
        if not parts or ".." in parts:
            raise ImageBuildFailed(f"a context file outside the context: {name!r}")
        target = context.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(content, target)
        target.chmod((mode & 0o7777) or 0o644)


async def _image_id(name: str) -> str:
    process = await asyncio.create_subprocess_exec(
        docker_path(), "image", "inspect", "--format", "{{.Id}}", name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=cli_env())
    out, _ = await process.communicate()
    return out.decode().strip() if process.returncode == 0 else ""


async def _docker_build(commands: list[str], tag: str, say: Callable[[str], None],
                        files: list[tuple[str, Path, int]] = ()) -> None:
    with tempfile.TemporaryDirectory(prefix="modal-emulator-build-") as context:
        await asyncio.to_thread(_write_context, Path(context), files)
        Path(context, "Dockerfile").write_text("\n".join(commands) + "\n")
        Path(context, ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
        # The classic builder needs no buildx plugin and prints plain lines.
        process = await asyncio.create_subprocess_exec(
            docker_path(), "build", "--label", "modal-emulator.layer=1", "-t", tag, context,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**cli_env(), "DOCKER_BUILDKIT": "0"})
        try:
            async with asyncio.timeout(BUILD_TIMEOUT):
                tail: list[str] = []
                while line := await process.stdout.readline():
                    text = line.decode(errors="replace").rstrip()
                    say(text)
                    tail = (tail + [text])[-5:]
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ImageBuildFailed(f"docker build took longer than {BUILD_TIMEOUT}s") from None
    if code != 0:
        raise ImageBuildFailed("docker build failed: " + " | ".join(t for t in tail if t))
