"""Walking, copying and removing folders a sandbox wrote, whatever it made of them.

A hostile command can nest folders ten thousand levels deep (deeper than
PATH_MAX and than Python's recursion limit: os.walk and shutil.rmtree fail
there), put a million entries in one folder, chmod folders to 000 or swap in
symlinks. These helpers never recurse and never build long paths: they hold
one directory file descriptor per level (opened with O_NOFOLLOW, so a symlink
is never entered), bound how deep and how much they list, and never cross
into another filesystem.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FILE, DIR, SYMLINK, SPECIAL = "file", "dir", "symlink", "special"
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1024 * 1024


@dataclass
class Found:
    """One entry of a walk. `parent_fd` and `name` are valid until the walk moves on."""

    path: str          # relative to the root, '/'-separated
    kind: str          # FILE | DIR | SYMLINK | SPECIAL
    size: int
    depth: int         # 1 for an entry directly in the root
    parent_fd: int
    name: str
    problem: str = ""  # set when this entry could not be walked (e.g. an unreadable folder)


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return SYMLINK
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISREG(mode):
        return FILE
    return SPECIAL


def walk(root: str | Path, max_depth: int, max_entries: int) -> Iterator[Found]:
    """Every entry under `root`, top-down (a folder before its contents), names
    sorted within a folder. Folders deeper than `max_depth` are listed but not
    entered; after `max_entries` entries the walk stops with one last entry
    whose `problem` says so. Symlinks are listed, never followed."""
    root_fd = os.open(root, OPEN_DIR)
    device = os.fstat(root_fd).st_dev
    stack: list[tuple[int, str, Iterator[str]]] = [(root_fd, "", iter(_names(root_fd)))]
    listed = 0
    try:
        while stack:
            fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            if listed >= max_entries:
                yield Found(prefix.rstrip("/") or ".", SPECIAL, 0, len(stack), fd, "",
                            problem=f"more than {max_entries} entries: the rest were not listed")
                return
            listed += 1
            depth = len(stack)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                yield Found(prefix + name, SPECIAL, 0, depth, fd, name, problem=f"could not be read: {exc.strerror}")
                continue
            kind = kind_of(st.st_mode)
            found = Found(prefix + name, kind, st.st_size if kind != DIR else 0, depth, fd, name)
            if kind != DIR or depth > max_depth:
                yield found
                continue
            if st.st_dev != device:
                found.problem = "another filesystem mounted here: not entered"
                yield found
                continue
            try:
                child = os.open(name, OPEN_DIR, dir_fd=fd)
            except OSError as exc:
                found.problem = f"folder could not be read: {exc.strerror}"
                yield found
                continue
            yield found
            stack.append((child, prefix + name + "/", iter(_names(child))))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _names(fd: int) -> Iterator[str]:
    """The names in a folder, sorted; a folder too big to sort is read in directory order."""
    names: list[str] = []
    with os.scandir(fd) as it:
        for entry in it:
            names.append(entry.name)
            if len(names) > 100_000:
                yield from names
                yield from (e.name for e in it)
                return
    yield from sorted(names)


def remove_tree(path: str | Path) -> None:
    """Remove `path` and everything under it, however deep or wide; never
    follows a symlink and never crosses into another filesystem (it refuses)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    fd = os.open(path, OPEN_DIR)
    device = st.st_dev
    # One open folder at a time; per ancestor: the name we went into, the
    # ancestor's (dev, ino) to check on the way back up, and its folders left to do.
    trail: list[tuple[str, tuple[int, int], list[str]]] = []
    try:
        pending = _clear_files(fd, device)
        while True:
            if pending:
                name = pending.pop()
                child = _open_child(fd, name)
                here = os.fstat(fd)
                trail.append((name, (here.st_dev, here.st_ino), pending))
                os.close(fd)
                fd = child
                pending = _clear_files(fd, device)
                continue
            if not trail:
                break
            name, expected, pending = trail.pop()
            parent = os.open("..", OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) != expected:
                raise OSError(f"the tree under {path} changed while it was being removed")
            _retry_permission(fd, functools.partial(os.rmdir, name, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _clear_files(fd: int, device: int) -> list[str]:
    """Unlink everything in the folder that is not a folder; return its sub-folders."""
    folders = []
    for name in _names(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            _retry_permission(fd, functools.partial(os.unlink, name, dir_fd=fd))
        elif st.st_dev != device:
            raise OSError(f"another filesystem is mounted at {name}: not removing it")
        else:
            folders.append(name)
    return folders


def _open_child(fd: int, name: str) -> int:
    try:
        return os.open(name, OPEN_DIR, dir_fd=fd)
    except PermissionError:   # chmod 000 by the sandbox (we own it, or we are root)
        os.chmod(name, 0o700, dir_fd=fd)
        return os.open(name, OPEN_DIR, dir_fd=fd)


def _retry_permission(fd: int, action) -> None:
    """Run `action`; when the folder `fd` forbids it (made read-only), open it up and retry."""
    try:
        action()
    except FileNotFoundError:
        pass
    except PermissionError:
        os.fchmod(fd, 0o700)
        action()


def copy_tree(src: str | Path, dst: str | Path, max_depth: int, max_entries: int,
              max_bytes: int | None = None) -> list[str]:
    """Copy `src` into `dst` (created) keeping symlinks and FIFOs as what they
    are, and sparse files sparse; returns what was left out (too deep, too many,
    unreadable, or files past `max_bytes` of data copied in all)."""
    os.makedirs(dst, exist_ok=True)
    left_out: list[str] = []
    budget = [max_bytes if max_bytes is not None else -1]   # bytes of data still allowed (-1: no cap)
    targets = [os.open(dst, OPEN_DIR)]   # targets[d] is the copy of the folder at depth d
    try:
        for found in walk(src, max_depth, max_entries):
            if found.problem:
                left_out.append(f"{found.path}: {found.problem}")
                if found.kind != DIR:
                    continue
            while len(targets) > found.depth:
                os.close(targets.pop())
            parent = targets[-1]
            if found.kind == DIR:
                if found.depth > max_depth:
                    left_out.append(f"{found.path}: nested deeper than {max_depth} folders")
                    continue
                os.mkdir(found.name, 0o755, dir_fd=parent)
                if not found.problem:
                    targets.append(os.open(found.name, OPEN_DIR, dir_fd=parent))
                continue
            if found.kind == SYMLINK:
                os.symlink(os.readlink(found.name, dir_fd=found.parent_fd), found.name, dir_fd=parent)
            elif found.kind == FILE and not _copy_file(found, parent, budget):
                left_out.append(f"{found.path}: past the {max_bytes} bytes a copy may take")
            elif stat.S_ISFIFO(os.stat(found.name, dir_fd=found.parent_fd, follow_symlinks=False).st_mode):
                os.mkfifo(found.name, dir_fd=parent)
    finally:
        for fd in targets:
            os.close(fd)
    return left_out


def _copy_file(found: Found, target_dir: int, budget: list[int]) -> bool:
    """Copy one file's data, holes left as holes (a sparse file takes on the copy what it
    holds, not its length); False, and no copy, when its data is past the budget."""
    src = os.open(found.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=found.parent_fd)
    try:
        out = os.open(found.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=target_dir)
        try:
            copied = _copy_data(src, out, budget)
        finally:
            os.close(out)
        if not copied:
            os.unlink(found.name, dir_fd=target_dir)
        return copied
    finally:
        os.close(src)


def _copy_data(src: int, out: int, budget: list[int]) -> bool:
    size = os.fstat(src).st_size
    os.ftruncate(out, size)
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError:   # ENXIO: a hole to the end
            break
        end = os.lseek(src, start, os.SEEK_HOLE)
        while start < end:
            chunk = os.pread(src, min(CHUNK, end - start), start)
            if not chunk:   # shrank while being copied
                return True
            if budget[0] >= 0:
                if len(chunk) > budget[0]:
                    return False
                budget[0] -= len(chunk)
            written = 0
            while written < len(chunk):
                written += os.pwrite(out, chunk[written:], start + written)
            start += len(chunk)
        offset = end
    return True
