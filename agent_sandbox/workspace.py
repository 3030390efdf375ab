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
MAX_NAME_CHARS = 1024  # a longer upload name, or a deeper one, is refused (the file system's own
MAX_NAME_PARTS = 32    # limits would fail later, with a less useful error)
_UNSAFE_CHARS = re.compile(r"[^\w.\- ()+,@=]", re.UNICODE)


def safe_name(name: str) -> str:
    """A user's file name as a safe relative path (sub-folders kept).

    Refuses absolute paths and any `..` component rather than silently
    rewriting them, so a hostile name fails loudly.
    """
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").strip()
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"refused file name {_short(name)}: it would leave the job folder")
    if len(name) > MAX_NAME_CHARS or len(path.parts) > MAX_NAME_PARTS:
        raise UnsafePath(f"refused file name {_short(name)}: longer than {MAX_NAME_CHARS} characters "
                         f"or {MAX_NAME_PARTS} folder levels")
    parts = []
    for part in path.parts:
        if part in ("", "."):
            continue
        cleaned = _fit(_UNSAFE_CHARS.sub("_", part).strip(" .")[:200], 240)  # file systems count bytes
        if not cleaned:
            raise UnsafePath(f"refused file name {_short(name)}")
        parts.append(cleaned)
    if not parts:
        raise UnsafePath(f"refused file name {_short(name)}")
    return "/".join(parts)


def _fit(part: str, max_bytes: int) -> str:
    return part.encode()[:max_bytes].decode(errors="ignore")


def _short(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:60] + "..." + name[-15:])


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
    except OSError as exc:  # a name the file system refuses (too long in bytes, ...)
        raise ValueError(f"refused file name {_short(rel)}: {exc.strerror}") from None
    stem, suffix, n = dest.stem, dest.suffix, 1
    written = 0
    try:
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{stem}_{n}{suffix}")
        out = open(dest, "xb")
    except OSError as exc:
        raise ValueError(f"refused file name {_short(rel)}: {exc.strerror}") from None
    with out:
        while chunk := data.read(1024 * 1024):
            written += len(chunk)
            if max_bytes is not None and written > max_bytes:
                out.close()
                dest.unlink()
                raise ValueError(f"{rel} is larger than the limit of {max_bytes} bytes")
            out.write(chunk)
    return dest


def copy_my_files(workspace: Path, my_files: Path | None = DEFAULT_MY_FILES,
                  notes: list[str] | None = None) -> list[Path]:
    """Copy the contents of my_files/ (regular files only, no links) into the workspace and
    list them in REFERENCE_LIST.

    An upload of the same name wins; each such clash is added to `notes`, so the
    job's log can say which file the job got.
    """
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
                _note(notes, f"{rel.as_posix()} is both an upload and in my_files/: the job got the upload "
                             f"(my_files/{rel.as_posix()} was not copied)")
                continue
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):  # an uploaded file has the name of this folder
                _note(notes, f"my_files/{rel.as_posix()} was not copied: an uploaded file has the name "
                             "of its folder; the job got the uploaded file")
                continue
            shutil.copyfile(src, dest)
            copied.append(dest)
    if copied:
        listed = sorted(p.relative_to(workspace).as_posix() for p in copied)
        (workspace / REFERENCE_LIST).write_text("".join(f"{p}\n" for p in listed), encoding="utf-8")
    return copied


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None:
        notes.append(text)


def reference_paths(workspace: Path) -> set[str]:
    """The workspace paths copied from my_files (empty when the workspace has no list)."""
    listing = Path(workspace) / REFERENCE_LIST
    if listing.is_symlink() or not listing.is_file():
        return set()
    return {line.strip() for line in listing.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()}


def prepare_workspace(root: Path, job_id: str, files: Iterable[Path | str],
                      my_files: Path | None = DEFAULT_MY_FILES, notes: list[str] | None = None) -> Path:
    """Create `<root>/uploaded_files/<job_id>/` from local files plus my_files/ (CLI use)."""
    workspace = job_workspace(root, job_id)
    workspace.mkdir(parents=True, exist_ok=False)
    for f in files:
        f = Path(f)
        if not f.is_file():
            raise FileNotFoundError(f"not a file: {f}")
        with open(f, "rb") as data:
            add_upload(workspace, f.name, data)
    copy_my_files(workspace, my_files, notes)
    return workspace
