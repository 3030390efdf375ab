"""Content-addressed storage of uploaded files and blobs, on disk.

Mount files arrive by sha256 (MountPutFile, inline or via a blob); a blob is
whatever a client PUT to an upload URL. Both live under the emulator's state
folder so large workspaces do not sit in memory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class ContentStore:
    def __init__(self, root: Path):
        self.files = Path(root) / "files"
        self.blobs = Path(root) / "blobs"
        self.files.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)

    def has_file(self, sha256_hex: str) -> bool:
        return self._file_path(sha256_hex).is_file()

    def file_path(self, sha256_hex: str) -> Path:
        path = self._file_path(sha256_hex)
        if not path.is_file():
            raise KeyError(sha256_hex)
        return path

    def put_file(self, sha256_hex: str, data: bytes) -> bool:
        """Store `data` under its hash; refuses data that does not match it."""
        if hashlib.sha256(data).hexdigest() != sha256_hex:
            return False
        _write_atomic(self._file_path(sha256_hex), data)
        return True

    def put_file_from_blob(self, sha256_hex: str, blob_id: str) -> bool:
        path = self.blob_path(blob_id)
        if path is None:
            return False
        return self.put_file(sha256_hex, path.read_bytes())

    def put_blob(self, blob_id: str, data: bytes) -> None:
        _write_atomic(self.blobs / _safe_id(blob_id), data)

    def blob_path(self, blob_id: str) -> Path | None:
        path = self.blobs / _safe_id(blob_id)
        return path if path.is_file() else None

    def _file_path(self, sha256_hex: str) -> Path:
        if len(sha256_hex) != 64 or any(c not in "0123456789abcdef" for c in sha256_hex):
            raise KeyError(sha256_hex)
        return self.files / sha256_hex


def _safe_id(object_id: str) -> str:
    if not object_id or "/" in object_id or object_id.startswith("."):
        raise KeyError(object_id)
    return object_id


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
