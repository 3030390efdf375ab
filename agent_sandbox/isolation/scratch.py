"""A sandbox's writable space on the host, capped so that it can never fill the host's disk.

As root, a run's folder gets a filesystem of its own: an ext4 image of
exactly `disk_mb`, reserved up front on the host's disk (so the run is
refused at start when the disk has not that much free) and loop-mounted
nosuid,nodev. Everything the sandbox may write lives there, /outputs and
/tmp together (one cap for both): writing past it fails inside with "No
space left on device", and what was written before stays readable for
collection. Removing it is an unmount and one unlink, however hostile the
tree inside.

Without root there is no mount: plain folders, and the cap is reported as
not enforced.

The folder holds an `owner` file naming the host process that made it, so
`leftovers()` finds the spaces of a process that died before it could remove
them (a server killed with SIGKILL): their images would hold the disk.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent_sandbox.isolation.owners import process_alive, this_process
from agent_sandbox.tree import remove_tree

MB = 1024 * 1024
OWNER = "owner"
IMAGE = "disk.img"
SYSTEM_BIN = "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
TOOL_TIMEOUT = 60


class DiskUnavailable(RuntimeError):
    """The run cannot get its writable space (e.g. the host lacks the free disk)."""


@dataclass
class RunSpace:
    folder: Path                 # the run's folder on the host (root only)
    data: Path                   # what the sandbox may write: holds outputs/ and tmp/
    image: Path | None = None    # the filesystem image, when there is one
    enforcement: str = ""        # how disk_mb holds, or "not enforced: why"

    @property
    def outputs(self) -> Path:
        return self.data / "outputs"

    @property
    def tmp(self) -> Path:
        return self.data / "tmp"

    @classmethod
    def create(cls, scratch_root: str | Path, prefix: str, disk_mb: int,
               owner: tuple[int, int] | None = None, folders: tuple[str, ...] = ("outputs", "tmp")) -> RunSpace:
        """The run's folder with `folders` in its writable space, owned by `owner` (uid, gid)."""
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root))
        (folder / OWNER).write_text(this_process())
        space = cls(folder, folder / "data")
        try:
            why = space._mount(disk_mb, owner) if os.geteuid() == 0 else "needs root (a loop-mounted filesystem)"
            if why:
                space.data.mkdir()
                space.enforcement = f"not enforced: {why}"
            else:
                space.enforcement = f"a {disk_mb} MB filesystem of its own, shared by everything the sandbox writes"
            for name in folders:
                (space.data / name).mkdir()
                if owner:
                    os.chown(space.data / name, *owner)
        except BaseException:
            space.remove()
            raise
        return space

    def _mount(self, disk_mb: int, owner: tuple[int, int] | None) -> str:
        """Make and mount the filesystem; returns why it could not ("" when it did)."""
        mkfs = shutil.which("mkfs.ext4", path=SYSTEM_BIN)
        mount = shutil.which("mount", path=SYSTEM_BIN)
        if not mkfs or not mount:
            return "mkfs.ext4 or mount is missing (e2fsprogs, mount)"
        self.image = self.folder / IMAGE
        reserve(self.image, disk_mb * MB)
        uid, gid = owner or (0, 0)
        run([mkfs, "-q", "-F", "-m", "0", "-O", "^has_journal",
             "-E", f"nodiscard,root_owner={uid}:{gid}", str(self.image)])
        self.data.mkdir()
        proc = subprocess.run([mount, "-o", "loop,nosuid,nodev,noatime", str(self.image), str(self.data)],
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        if proc.returncode != 0:
            self.image.unlink()
            self.image = None
            return f"could not loop-mount a filesystem ({proc.stderr.strip() or proc.returncode})"
        shutil.rmtree(self.data / "lost+found", ignore_errors=True)
        return ""

    def remove(self) -> None:
        """Unmount and delete everything; safe to call twice."""
        if self.image is not None and os.path.ismount(self.data):
            umount = shutil.which("umount", path=SYSTEM_BIN) or "umount"
            if subprocess.run([umount, str(self.data)], capture_output=True, timeout=TOOL_TIMEOUT).returncode:
                # Busy (a process we do not know of still has a file open): detach it now,
                # the kernel frees it with the last user.
                subprocess.run([umount, "-l", str(self.data)], capture_output=True, timeout=TOOL_TIMEOUT)
        remove_tree(self.folder)


def leftovers(scratch_root: str | Path, prefix: str = "agent-") -> list[RunSpace]:
    """The spaces under `scratch_root` whose owning process is gone."""
    found = []
    try:
        names = os.listdir(scratch_root)
    except OSError:
        return found
    for name in names:
        folder = Path(scratch_root, name)
        try:
            owner = (folder / OWNER).read_text() if name.startswith(prefix) else ""
        except OSError:
            continue
        if owner and not process_alive(owner):
            image = folder / IMAGE
            found.append(RunSpace(folder, folder / "data", image if image.exists() else None))
    return found


def reserve(path: Path, size: int) -> None:
    """Create `path` with `size` bytes allocated on the host's disk (not a sparse file:
    the run must not find the disk full later); DiskUnavailable when it has not room.
    On a tmpfs (a /tmp in memory) nothing is reserved: that would take the memory now."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    if filesystem_type(path.parent) == "tmpfs":
        os.ftruncate(fd, size)
        os.close(fd)
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.fallocate(fd, 0, ctypes.c_longlong(0), ctypes.c_longlong(size)) != 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC:
                raise _no_room(path, size)
            if code not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(code, os.strerror(code), str(path))
            os.ftruncate(fd, size)   # this filesystem cannot reserve: the cap still holds
        elif shutil.disk_usage(path.parent).free < headroom(path.parent):
            # Reserved, but the host would be left too little for its own writes (the
            # job store, logs, the results being collected): give it back and refuse.
            os.ftruncate(fd, 0)
            raise _no_room(path, size)
    finally:
        os.close(fd)


def headroom(folder: Path) -> int:
    """Free space that reservations never take: a tenth of the disk, at most 1 GB."""
    return min(1024 * MB, shutil.disk_usage(folder).total // 10)


def _no_room(path: Path, size: int) -> DiskUnavailable:
    free = shutil.disk_usage(path.parent).free // MB
    return DiskUnavailable(f"the host has {free} MB free where runs keep their files "
                           f"({path.parent.parent}); the run needs {size // MB} MB "
                           f"(AGENT_SANDBOX_DISK_MB) and {headroom(path.parent) // MB} MB must stay free")


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (from /proc/self/mountinfo)."""
    path, best, kind = os.path.realpath(path), "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mount_point = fields[4].replace("\\040", " ")
                fstype = fields[fields.index("-") + 1]
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, kind = mount_point, fstype
    except (OSError, ValueError, IndexError):
        pass
    return kind


def run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    if proc.returncode != 0:
        raise OSError(f"{Path(argv[0]).name} failed: {proc.stderr.strip() or proc.returncode}")
