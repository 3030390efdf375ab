"""Prepare a job's workspace: its uploads plus the contents of `my_files/`.

The folder `<root>/uploaded_files/<job_id>/` becomes /workspace in the
sandbox. Upload names come from users, so each is reduced to a safe relative
path; a name that would escape the folder is refused. `fill_workspace` makes
one whatever its files come from (uploads, local files, a rerun's, a
follow-up's) and leaves nothing behind when that fails; `remove_workspace`
removes it once the run or the job is over: it is a copy of someone's data.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

from agent_sandbox.paths import REFERENCE_LIST, UnsafePath, safe_name, short_name
from agent_sandbox.tree import remove_tree

# Relative to the working directory (the repository's my_files/ when run from its root, as
# `make run` and `make demo` do): the library names no folder of its own checkout.
DEFAULT_MY_FILES = Path("my_files")
AGENT_PACKAGE = "agent_sandbox"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
T = TypeVar("T")


def job_workspace(root: Path, job_id: str) -> Path:
    if not _JOB_ID.match(job_id):
        raise UnsafePath(f"bad job id {job_id!r}")
    return Path(root) / "uploaded_files" / job_id


def add_upload(workspace: Path, name: str, data: BinaryIO, max_bytes: int | None = None) -> Path:
    """Stream one upload into the workspace; returns its path. Never overwrites."""
    rel = safe_name(name)
    if PurePosixPath(rel).parts[0].partition(".")[0] == AGENT_PACKAGE:
        # The agent never imports from /workspace (it starts with `python -I`), and no
        # command run there should find a package of that name either.
        raise UnsafePath(f"refused file name {short_name(rel)}: the agent's own package name "
                         f"({AGENT_PACKAGE}) is reserved; rename it")
    dest = workspace / rel
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{rel} clashes with another uploaded file of the same name as its folder") from None
    except OSError as exc:  # a name the file system refuses (too long in bytes, ...)
        raise ValueError(f"refused file name {short_name(rel)}: {exc.strerror}") from None
    stem, suffix, n = dest.stem, dest.suffix, 1
    written = 0
    try:
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{stem}_{n}{suffix}")
        out = open(dest, "xb")
    except OSError as exc:
        raise ValueError(f"refused file name {short_name(rel)}: {exc.strerror}") from None
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


def fill_workspace(workspace: Path, fill: Callable[[Path], T], my_files: Path | None,
                   notes: list[str] | None = None) -> T:
    """Create `workspace`, let `fill` put the job's own files in it, then add `my_files/`
    (an upload of the same name wins; `notes` says so). Returns what `fill` returned.
    On any failure the workspace is removed: nothing is left behind."""
    workspace.mkdir(parents=True)
    try:
        filled = fill(workspace)
        copy_my_files(workspace, my_files, notes)
        return filled
    except BaseException:
        remove_workspace(workspace)
        raise


def add_files(workspace: Path, paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """Local files into the workspace (the CLI's inputs); [{name, size}]."""
    files = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"not a file: {path}")
        with open(path, "rb") as data:
            dest = add_upload(workspace, path.name, data)
        files.append({"name": dest.relative_to(workspace).as_posix(), "size": dest.stat().st_size})
    return files


def remove_workspace(workspace: Path) -> None:
    """A job's workspace, once nothing needs it (never a link: only the folder itself goes)."""
    if workspace.is_dir() and not workspace.is_symlink():
        remove_tree(workspace)


def prepare_workspace(root: Path, job_id: str, files: Iterable[Path | str],
                      my_files: Path | None = DEFAULT_MY_FILES, notes: list[str] | None = None) -> Path:
    """Create `<root>/uploaded_files/<job_id>/` from local files plus my_files/."""
    workspace = job_workspace(root, job_id)
    fill_workspace(workspace, lambda ws: add_files(ws, files), my_files, notes)
    return workspace
