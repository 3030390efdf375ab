"""A run's outputs on a Modal volume: listed until settled, then read as an OutputSource.

Modal syncs a v2 volume when its sandbox terminates (or earlier on `sync
<mount>`), with no promise of timing: `settled_listing` lists again, with a
short backoff, until the listing holds as many files as the agent said it
left and two listings agree (bounded). `VolumeSource` then serves that
listing to `collect_outputs`, which runs in a download thread: each file is
read in the chunks Modal streams it in, on the runner's event loop, and a
failed read of any kind (Modal's ExecutionError, ServiceError, a lost
connection) is an OSError for that one file, which is skipped with its reason.
"""

from __future__ import annotations

import asyncio
import errno
import io
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import modal
from modal.types import FileEntryType

from agent_sandbox.backends.modal_calls import describe_error
from agent_sandbox.outputs import DIR, FILE, SPECIAL, SYMLINK, OutputEntry

KINDS = {FileEntryType.FILE: FILE, FileEntryType.DIRECTORY: DIR, FileEntryType.SYMLINK: SYMLINK}
READ_TIMEOUT = 300.0      # seconds one chunk (a volume block) may take to come
FIRST_RELIST = 0.2        # seconds before the first listing is checked again, doubling


async def list_volume(volume: modal.Volume) -> list[OutputEntry]:
    entries = await volume.listdir.aio("/", recursive=True)
    return [OutputEntry(e.path.lstrip("/"), KINDS.get(e.type, SPECIAL), e.size) for e in entries]


async def settled_listing(volume: modal.Volume, expected_files: Any, wait: float, settle: float) -> list[OutputEntry]:
    """The volume's listing once it is in sync, or the last one after `wait` seconds.

    In sync: at least `expected_files` regular files (the agent's own count) and
    the same as the listing before; without a count, unchanged for `settle` s."""
    deadline = time.monotonic() + wait
    listing, delay = await list_volume(volume), FIRST_RELIST
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        counted = isinstance(expected_files, int) and not isinstance(expected_files, bool)
        files = sum(1 for entry in listing if entry.kind == FILE)
        if counted and files < expected_files:
            pass   # not synced yet
        elif counted or time.monotonic() - stable_since >= settle:
            again = await list_volume(volume) if counted else listing
            if again == listing:
                return listing
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)
        fresh = await list_volume(volume)
        if fresh != listing:
            listing, stable_since = fresh, time.monotonic()
    return listing


class VolumeSource:
    """An OutputSource over a settled listing; opens only what it listed as a regular file."""

    def __init__(self, volume: modal.Volume, listing: list[OutputEntry], loop: asyncio.AbstractEventLoop):
        self.volume, self.listing, self.loop = volume, listing, loop
        self._files = {entry.path for entry in listing if entry.kind == FILE}

    def entries(self) -> Iterator[OutputEntry]:
        return iter(self.listing)

    def open(self, path: str) -> io.BufferedReader:
        if path not in self._files:
            raise OSError(errno.EINVAL, f"not a regular file: {path}")
        return io.BufferedReader(_ChunkReader(self.volume.read_file.aio, path, self.loop))


class _ChunkReader(io.RawIOBase):
    """A read-only file over Volume.read_file's chunks, pulled on the event loop from another thread."""

    def __init__(self, read_file, path: str, loop: asyncio.AbstractEventLoop):
        self._read_file, self._path, self._loop = read_file, path, loop
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = self._on_loop(self._next())
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if self._chunks is not None and not self.closed:
            try:
                self._on_loop(self._chunks.aclose())
            except OSError:
                pass
        super().close()

    async def _next(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._read_file(self._path)
        return await anext(self._chunks, b"")

    def _on_loop(self, coroutine) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(READ_TIMEOUT)
        except Exception as exc:   # of any kind (Modal's, the connection's): this file is lost, not the run
            raise OSError(errno.EIO, f"the download from Modal failed ({describe_error(exc)})") from exc
