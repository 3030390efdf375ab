"""The image the agent runs in on Modal: its recipe, built (or found) once.

The recipe is `debian_slim` + the agent's runtime packages at the versions of
the project's lock (agent_sandbox.backends.packages: the same releases as the
Docker image and the tests, so every build gives the same sandbox) + any extra
packages + the agent's own source, copied into a layer; then, per job, its
workspace as a mount: local files last, as Modal requires.

Modal builds an image remotely the first time a sandbox asks for it: minutes
with no word in our logs, and no way to cancel it. So a process builds (or,
when Modal has it cached, only looks up) the image once at start-up,
`build()`, with every line of the build log in our log; each job then starts
from it by id (`Image.from_id`), so the client resolves only the job's own
files: a mount of the agent's source would be hashed and checked again for
every sandbox (half the client's CPU per job, measured).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

import modal
from modal._output.manager import DisabledOutputManager, OutputManager

from agent_sandbox.backends import packages

if TYPE_CHECKING:
    from agent_sandbox.spec import RunSpec

log = logging.getLogger(__name__)


class ModalConfig(Protocol):
    """What the recipe reads of the Modal backend's settings (modal.ModalConfig), named
    here so this module need not import the backend that imports it."""

    python_version: str
    extra_packages: list[str]


_images: dict[tuple, tuple[modal.Image, modal.Image]] = {}
_built: dict[tuple, str] = {}   # the id of each recipe's image once built (or found) in this process
_building: dict[tuple, asyncio.Future] = {}   # a build the runner's jobs wait for together
_lock = threading.Lock()


def runtime_packages(config: ModalConfig) -> tuple[str, ...]:
    """What the agent needs inside the sandbox, at the lock's versions for the image's Python.
    The model SDKs too: an API model runs its official SDK inside, over the host's relay."""
    return packages.pinned(config.python_version)


def _key(config: ModalConfig) -> tuple:
    return config.python_version, tuple(config.extra_packages)


def remote_image(config: ModalConfig) -> modal.Image:
    """The part Modal builds: debian_slim and the packages."""
    return _pair(config)[0]


def base_image(config: ModalConfig) -> modal.Image:
    """What every job shares: the remote part and the agent's source, built into one image."""
    return _pair(config)[1]


async def built_image_id(config: ModalConfig, app: modal.App) -> str:
    """The shared image's id: built at start-up (`build`), or now, once, for the jobs that need it."""
    key = _key(config)
    if key in _built:
        return _built[key]
    if key not in _building or _building[key].done() and _building[key].exception() is not None:
        _building[key] = asyncio.ensure_future(_build_async(config, app))   # a failed build is tried again
    return await asyncio.shield(_building[key])


async def _build_async(config: ModalConfig, app: modal.App) -> str:
    image = base_image(config)
    await image.build.aio(app)
    _built[_key(config)] = image.object_id
    return image.object_id


def job_image(config: ModalConfig, spec: RunSpec, image_id: str) -> modal.Image:
    """The shared image by its id, and this job's workspace at /workspace (uploaded when it is used)."""
    return modal.Image.from_id(image_id).add_local_dir(str(spec.workspace), "/workspace")


def _pair(config: ModalConfig) -> tuple[modal.Image, modal.Image]:
    with _lock:
        if _key(config) not in _images:
            remote = (modal.Image.debian_slim(python_version=config.python_version)
                      .pip_install(*runtime_packages(config), *config.extra_packages))
            _images[_key(config)] = remote, remote.add_local_python_source("agent_sandbox", copy=True)
        return _images[_key(config)]


def build(config: ModalConfig, app: modal.App) -> str:
    """Build (or look up) the shared image now, its build log in ours; the image id.

    Raises modal.exception.ImageBuildError (its log already written) when it fails.
    """
    image = base_image(config)
    started = time.monotonic()
    log.info("Modal image: building or looking up debian_slim (Python %s) + %s", config.python_version,
             " ".join([*runtime_packages(config), *config.extra_packages]))
    previous = OutputManager.get()
    OutputManager._set(_BuildLog())
    try:
        image.build(app)
    finally:
        OutputManager._set(previous)
    log.info("Modal image %s ready in %.1fs", image.object_id, time.monotonic() - started)
    _built[_key(config)] = image.object_id
    return image.object_id


class _BuildLog(DisabledOutputManager):
    """The client's output, silent but for the image build log, which goes to our log line by line."""

    def __init__(self) -> None:
        self._partial = ""

    async def put_streaming_log(self, log_entry, prefix: str = "") -> None:
        lines = (self._partial + log_entry.data).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                log.info("Modal image build: %s", line.rstrip())

    def flush_lines(self) -> None:
        if self._partial.strip():
            log.info("Modal image build: %s", self._partial.rstrip())
        self._partial = ""
