"""A run's outputs on a Modal volume, as an OutputSource for `collect_outputs`.

Listed once with kinds and sizes; only what was listed as a regular file is
ever opened, and read in the chunks Modal streams it in.
"""

from __future__ import annotations

import io
from typing import Iterator

import modal

from agent_sandbox.outputs import DIR, FILE, SPECIAL, SYMLINK, OutputEntry


class VolumeSource:
    """An OutputSource over a Modal volume; opens only what it listed as a regular file."""

    KINDS = {modal.volume.FileEntryType.FILE: FILE, modal.volume.FileEntryType.DIRECTORY: DIR,
             modal.volume.FileEntryType.SYMLINK: SYMLINK}

    def __init__(self, volume: modal.Volume):
        self.volume = volume
        self._files: set[str] = set()

    def entries(self) -> Iterator[OutputEntry]:
        for entry in self.volume.listdir("/", recursive=True):
            path = entry.path.lstrip("/")
            kind = self.KINDS.get(entry.type, SPECIAL)
            if kind == FILE:
                self._files.add(path)
            yield OutputEntry(path, kind, entry.size)

    def open(self, path: str) -> io.BufferedReader:
        if path not in self._files:
            raise OSError(f"not a regular file: {path}")
        return io.BufferedReader(_ChunkReader(self.volume.read_file(path)))


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (Volume.read_file)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
