"""Prepare a job's workspace: its uploads plus the contents of `my_files/`.

The folder `<root>/uploaded_files/<job_id>/` becomes /workspace in the
sandbox. Upload names come from users, so each is reduced to a safe relative
path; a name that would escape the folder is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

from agent_sandbox.outputs import UnsafePath

DEFAULT_MY_FILES = Path(__file__).resolve().parent.parent / "my_files"
# Written beside the copies: the workspace paths that came from my_files, one per line, so the
# agent treats them as the lab's reference material, not as uploaded data. An upload can never
# take this name (safe_name strips leading dots).
REFERENCE_LIST = ".my_files"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_UNSAFE_CHARS = re.compile(r"[^\w.\- ()+,@=]", re.UNICODE)


def safe_name(name: str) -> str:
    """A user's file name as a safe relative path (sub-folders kept).

    Refuses absolute paths and any `..` component rather than silently
    rewriting them, so a hostile name fails loudly.
    """
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").strip()
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"refused file name {name!r}: it would leave the job folder")
    parts = []
    for part in path.parts:
        if part in ("", "."):
            continue
        cleaned = _UNSAFE_CHARS.sub("_", part).strip(" .")[:200]
        if not cleaned:
            raise UnsafePath(f"refused file name {name!r}")
        parts.append(cleaned)
    if not parts:
        raise UnsafePath(f"refused file name {name!r}")
    return "/".join(parts)


def job_workspace(root: Path, job_id: str) -> Path:
    if not _JOB_ID.match(job_id):
        raise UnsafePath(f"bad job id {job_id!r}")
    return Path(root) / "uploaded_files" / job_id


def add_upload(workspace: Path, name: str, data: BinaryIO, max_bytes: int | None = None) -> Path:
    """Stream one upload into the workspace; returns its path. Never overwrites."""
    rel = safe_name(name)
    dest = workspace / rel
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{rel} clashes with another uploaded file of the same name as its folder") from None
    stem, suffix, n = dest.stem, dest.suffix, 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{stem}_{n}{suffix}")
    written = 0
    with open(dest, "xb") as out:
        while chunk := data.read(1024 * 1024):
            written += len(chunk)
            if max_bytes is not None and written > max_bytes:
                out.close()
                dest.unlink()
                raise ValueError(f"{rel} is larger than the limit of {max_bytes} bytes")
            out.write(chunk)
    return dest


def copy_my_files(workspace: Path, my_files: Path | None = DEFAULT_MY_FILES) -> list[Path]:
    """Copy the contents of my_files/ (regular files only, no links) into the workspace and
    list them in REFERENCE_LIST."""
    copied: list[Path] = []
    if not my_files or not Path(my_files).is_dir():
        return copied
    my_files = Path(my_files)
    for dirpath, _dirnames, filenames in os.walk(my_files, followlinks=False):
        for fname in filenames:
            src = Path(dirpath, fname)
            if src.is_symlink() or not src.is_file():
                continue
            rel = src.relative_to(my_files)
            dest = workspace / rel
            if dest.exists():  # an upload of the same name wins
                continue
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                continue  # an uploaded file has the name of this folder: the upload wins
            shutil.copyfile(src, dest)
            copied.append(dest)
    if copied:
        listed = sorted(p.relative_to(workspace).as_posix() for p in copied)
        (workspace / REFERENCE_LIST).write_text("".join(f"{p}\n" for p in listed), encoding="utf-8")
    return copied


def reference_paths(workspace: Path) -> set[str]:
    """The workspace paths copied from my_files (empty when the workspace has no list)."""
    listing = Path(workspace) / REFERENCE_LIST
    if listing.is_symlink() or not listing.is_file():
        return set()
    return {line.strip() for line in listing.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()}


def prepare_workspace(root: Path, job_id: str, files: Iterable[Path | str],
                      my_files: Path | None = DEFAULT_MY_FILES) -> Path:
    """Create `<root>/uploaded_files/<job_id>/` from local files plus my_files/ (CLI use)."""
    workspace = job_workspace(root, job_id)
    workspace.mkdir(parents=True, exist_ok=False)
    for f in files:
        f = Path(f)
        if not f.is_file():
            raise FileNotFoundError(f"not a file: {f}")
        with open(f, "rb") as data:
            add_upload(workspace, f.name, data)
    copy_my_files(workspace, my_files)
    return workspace
