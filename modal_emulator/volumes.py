"""Volume storage, with Modal's sync semantics.

A sandbox never writes into a volume directly: it gets a private copy (taken
when it starts) and that copy is committed back into the volume only when the
sandbox terminates. So, as on Modal, the host sees a sandbox's writes only
after terminate + wait, and a backend that forgets to terminate finds the
volume empty instead of passing by accident.

Symlinks, FIFOs and sockets are copied as what they are (never followed) and
listed with their own types, so the client sees what the sandbox left. A
sparse file stays sparse, and a commit copies at most the sandbox's disk of
data: a 2 GB file with nothing in it costs the host nothing, and no sandbox
puts more on the host than it had. A
hostile tree is walked without recursion (agent_sandbox.tree); what lies
deeper than MAX_TREE_DEPTH folders, or past MAX_TREE_ENTRIES entries, is not
committed (logged): unlike Modal, the emulator keeps only that much.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from modal_proto import api_pb2

from agent_sandbox import tree

log = logging.getLogger("modal_emulator")
MAX_TREE_DEPTH = 100          # deeper than the Modal backend collects (64), so it sees the cut
MAX_TREE_ENTRIES = 1_000_000

_TYPES = {
    stat.S_IFREG: api_pb2.FileEntry.FILE,
    stat.S_IFDIR: api_pb2.FileEntry.DIRECTORY,
    stat.S_IFLNK: api_pb2.FileEntry.SYMLINK,
    stat.S_IFIFO: api_pb2.FileEntry.FIFO,
    stat.S_IFSOCK: api_pb2.FileEntry.SOCKET,
}


@dataclass
class Volume:
    volume_id: str
    root: Path
    name: str = ""
    ephemeral: bool = False
    version: int = 1              # VolumeFS version: 1 unless 2 was asked for, as on Modal
    last_heartbeat: float = field(default_factory=time.monotonic)

    def resolve(self, path: str) -> Path:
        """A path inside the volume; refuses `..` and a path through a symlink a sandbox
        left (`link/shadow` with link -> /etc would read the host's files)."""
        parts = [p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", ".")]
        if ".." in parts:
            raise KeyError(path)
        for depth in range(1, len(parts)):
            if os.path.islink(self.root.joinpath(*parts[:depth])):
                raise KeyError(path)
        return self.root.joinpath(*parts)

    def list(self, path: str, recursive: bool) -> list[api_pb2.FileEntry]:
        base = self.resolve(path)
        try:
            st = os.lstat(base)
        except FileNotFoundError:
            raise KeyError(path) from None
        if not stat.S_ISDIR(st.st_mode):
            return [self._entry(base, st)]
        prefix = base.relative_to(self.root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        entries = []
        for found in tree.walk(base, MAX_TREE_DEPTH if recursive else 0, MAX_TREE_ENTRIES):
            if found.problem and found.kind != tree.DIR:
                continue
            st = os.stat(found.name, dir_fd=found.parent_fd, follow_symlinks=False)
            entries.append(api_pb2.FileEntry(path=prefix + found.path, mtime=int(st.st_mtime), size=st.st_size,
                                             type=_TYPES.get(stat.S_IFMT(st.st_mode), api_pb2.FileEntry.UNSPECIFIED)))
        return entries

    def regular_file(self, path: str) -> Path:
        """The file at `path` if it is a regular file (a symlink is not)."""
        full = self.resolve(path)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            raise KeyError(path) from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyError(path)
        return full

    def _entry(self, full: Path, st: os.stat_result) -> api_pb2.FileEntry:
        return api_pb2.FileEntry(
            path=full.relative_to(self.root).as_posix(),
            type=_TYPES.get(stat.S_IFMT(st.st_mode), api_pb2.FileEntry.UNSPECIFIED),
            mtime=int(st.st_mtime),
            size=st.st_size,
        )


class VolumeStore:
    def __init__(self, root: Path):
        self.root = Path(root) / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        self.by_id: dict[str, Volume] = {}
        self._by_name: dict[str, str] = {}

    def get_or_create(self, name: str, ephemeral: bool, create: bool, version: int = 1) -> Volume:
        if name and name in self._by_name:
            return self.by_id[self._by_name[name]]
        if not create:
            raise KeyError(name)
        volume_id = f"vo-{uuid.uuid4().hex[:22]}"
        volume = Volume(volume_id, self.root / volume_id, name=name, ephemeral=ephemeral, version=version)
        volume.root.mkdir()
        self.by_id[volume_id] = volume
        if name:
            self._by_name[name] = volume_id
        return volume

    def get(self, volume_id: str) -> Volume:
        return self.by_id[volume_id]

    def delete(self, volume_id: str) -> None:
        volume = self.by_id.pop(volume_id)
        self._by_name.pop(volume.name, None)
        tree.remove_tree(volume.root)

    def expire_ephemeral(self, max_age: float) -> list[str]:
        """Delete ephemeral volumes whose client stopped heartbeating."""
        now = time.monotonic()
        stale = [v.volume_id for v in self.by_id.values()
                 if v.ephemeral and now - v.last_heartbeat > max_age]
        for volume_id in stale:
            self.delete(volume_id)
        return stale


def copy_tree(src: Path, dst: Path, max_bytes: int | None = None) -> None:
    """Copy `src` into `dst` (created), keeping symlinks and FIFOs as such and sparse files
    sparse, at most `max_bytes` of data (what is past it is left out, logged).

    Devices are skipped: a jail cannot create them and a volume never holds them.
    """
    left_out = tree.copy_tree(src, dst, MAX_TREE_DEPTH, MAX_TREE_ENTRIES, max_bytes)
    for item in left_out[:10]:
        log.warning("copying %s: left out %s", src, item)
    if len(left_out) > 10:
        log.warning("copying %s: left out %d more", src, len(left_out) - 10)


def commit(volume: Volume, private: Path, max_bytes: int | None = None) -> None:
    """Replace the volume's contents with what the sandbox left in `private`: what it holds,
    never more of the host's disk than the sandbox had (`max_bytes`)."""
    staging = volume.root.with_name(volume.root.name + ".commit")
    tree.remove_tree(staging)
    copy_tree(private, staging, max_bytes)
    old = volume.root.with_name(volume.root.name + ".old")
    volume.root.rename(old)
    staging.rename(volume.root)
    tree.remove_tree(old)
