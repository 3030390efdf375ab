"""Bring a sandbox's outputs back to the host, safely, with a manifest.

Every backend lists what the sandbox left in /outputs as `OutputEntry`s (path,
kind, size) through an `OutputSource`; `collect_outputs` decides what comes
back and writes `manifest.json` (agent_sandbox.manifest).

Only regular files are copied. Symlinks and special files (FIFOs, sockets,
devices) are never followed or opened; files over the per-file limit, past the
per-job total limit or past the file-count limit are listed with the reason
(sizes in MB and what to do) instead. Files over the preview threshold still
come back, flagged `"large": true`; small files are taken first, then large
ones with Parquet and compressed files ahead of the rest, so when the total
limit bites the most compact forms of the results are the ones kept.
So is whatever a hostile tree hides: folders nested deeper than MAX_DEPTH are
listed (once, at the cut) but not brought back, and a listing stops after
MAX_LISTED entries (agent_sandbox.tree walks without recursion or long paths).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from agent_sandbox import tree
from agent_sandbox.manifest import MANIFEST, write_manifest
from agent_sandbox.paths import UnsafePath, safe_join
from agent_sandbox.spec import Limits
from agent_sandbox.tree import DIR, FILE, SPECIAL, SYMLINK  # noqa: F401 (the kinds, as backends import them)

CHUNK = 1024 * 1024
MAX_DEPTH = 64          # folders nested deeper than this do not come back
MAX_LISTED = 100_000    # entries listed from one sandbox's outputs
COMPACT = (".parquet", ".gz", ".zip", ".xz", ".bz2", ".zst")  # large files that come back first
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")  # in a name: not servable (URLs, headers), so never brought back
RERUN = "download scripts/ and rerun them on your files locally, or ask the operator to raise"


@dataclass
class OutputEntry:
    path: str   # relative, POSIX separators
    kind: str   # FILE | DIR | SYMLINK | SPECIAL
    size: int
    problem: str = ""   # why the source could not list or enter it; the entry is skipped with this reason


class OutputSource(Protocol):
    def entries(self) -> Iterable[OutputEntry]: ...

    def open(self, path: str) -> BinaryIO:
        """Open a regular file for reading; must refuse symlinks."""
        ...


class DirectorySource:
    """Outputs in a host folder (local and Docker backends). Never follows links."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entries(self) -> Iterator[OutputEntry]:
        # Never os.walk: it recurses (a deep tree raises RecursionError) and builds
        # whole paths; tree.walk lists links as links and never enters them.
        for found in tree.walk(self.root, MAX_DEPTH, MAX_LISTED):
            yield OutputEntry(found.path, found.kind, found.size, found.problem)

    def open(self, path: str) -> BinaryIO:
        parts = safe_join(self.root, path).relative_to(self.root).parts
        # Walk down one folder at a time with O_NOFOLLOW, so a symlink swapped in
        # after listing (as a folder or as the file) is refused at every level;
        # O_NONBLOCK keeps a FIFO swapped in from blocking us forever.
        dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = inner
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.fdopen(fd, "rb")


def collect_outputs(source: OutputSource, results: Path, limits: Limits,
                    extra_skipped: Iterable[dict] = (), run: dict | None = None) -> dict:
    """Copy what may come back from `source` into `results`; write and return the manifest
    (with `run`, how the run ended, when given)."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    files: list[dict] = []
    skipped: list[dict] = list(extra_skipped)
    total = 0
    for entry in sorted(source.entries(), key=lambda e: _collect_order(e, limits)):
        depth = entry.path.count("/") + 1
        if depth > MAX_DEPTH:   # what is deeper still lies inside the folder reported at the cut
            if depth == MAX_DEPTH + 1:
                skipped.append(_skip(entry, f"nested deeper than {MAX_DEPTH} folders: "
                                            + ("its contents were " if entry.kind == DIR else "")
                                            + "not brought back"))
            continue
        if entry.problem:
            skipped.append(_skip(entry, entry.problem))
            continue
        if entry.kind == DIR:
            continue
        if CONTROL_CHARS.search(entry.path):
            skipped.append(_skip(entry, "its name holds a control character (such as a line break), "
                                        "which no link or download can carry; rename it"))
            continue
        if entry.path == MANIFEST:
            skipped.append(_skip(entry, "reserved name (the host writes the manifest)"))
            continue
        if entry.kind == SYMLINK:
            skipped.append(_skip(entry, "symlink (never followed)"))
            continue
        if entry.kind != FILE:
            skipped.append(_skip(entry, "not a regular file"))
            continue
        if entry.size > limits.max_file_bytes:
            skipped.append(_skip(entry, _over_file_limit(entry.size, limits)))
            continue
        if total + entry.size > limits.max_total_bytes:
            skipped.append(_skip(entry, _over_total_limit(entry.size, limits)))
            continue
        if len(files) >= limits.max_files:
            skipped.append(_skip(entry, f"past the limit of {limits.max_files} files"))
            continue
        try:
            record = _copy(source, entry, results, min(limits.max_file_bytes, limits.max_total_bytes - total))
        except (OSError, UnsafePath) as exc:
            skipped.append(_skip(entry, f"could not be read: {exc.strerror if isinstance(exc, OSError) else exc}"))
            continue
        if record is None:  # it grew after it was listed
            skipped.append(_skip(entry, "grew past the output limits while being copied"))
            continue
        if record["size"] > limits.preview_bytes:
            record["large"] = True
        total += record["size"]
        files.append(record)
    files.sort(key=lambda f: f["path"])
    manifest = {"files": files, "skipped": skipped}
    if run is not None:
        manifest["run"] = run
    write_manifest(results, manifest)
    return manifest


def _collect_order(entry: OutputEntry, limits: Limits) -> tuple:
    """Small files in path order, then large ones: Parquet and compressed first, smallest first."""
    if entry.size <= limits.preview_bytes:
        return (0, 0, entry.path)
    return (1, 0 if entry.path.lower().endswith(COMPACT) else 1, entry.size, entry.path)


def _mb(n: int) -> str:
    if n < CHUNK:
        return f"{n / 1024:.1f} KB"
    return f"{n / CHUNK:.1f} MB" if n < 10 * CHUNK else f"{n / CHUNK:,.0f} MB"


def _over_file_limit(size: int, limits: Limits) -> str:
    return (f"{_mb(size)}, larger than the per-file limit of {_mb(limits.max_file_bytes)}; "
            f"{RERUN} AGENT_SANDBOX_MAX_FILE_BYTES")


def _over_total_limit(size: int, limits: Limits) -> str:
    return (f"{_mb(size)}, past the per-job total limit of {_mb(limits.max_total_bytes)} for results; "
            f"{RERUN} AGENT_SANDBOX_MAX_TOTAL_BYTES")


def _skip(entry: OutputEntry, reason: str) -> dict:
    return {"path": entry.path, "size": entry.size, "reason": reason}


# Runs of zeros come back as holes: a sparse file takes on the host what it took in the
# sandbox's capped disk, not its logical size (it is still brought back whole).
ZEROS = bytes(CHUNK)


def _copy(source: OutputSource, entry: OutputEntry, results: Path, max_bytes: int) -> dict | None:
    dest = safe_join(results, entry.path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with source.open(entry.path) as src, open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:  # the file grew after it was listed
                    out.close()
                    tmp.unlink()
                    return None
                digest.update(chunk)
                if chunk == ZEROS[:len(chunk)]:   # a hole (or zeros): stays one, the host's disk holds no more
                    out.seek(len(chunk), os.SEEK_CUR)
                else:
                    out.write(chunk)
            out.truncate(size)
    except BaseException:   # a read that failed half-way (a download) leaves no half file behind
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return {"path": entry.path, "size": size, "sha256": digest.hexdigest()}
