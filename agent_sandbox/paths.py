"""Paths that come from outside (users' upload names, what a sandbox asks to write)
made safe: nothing escapes its folder, hostile names fail loudly. Shared by the host
and the agent inside the sandbox, like the list of reference files between them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

# Written beside the copies: the workspace paths that came from my_files, one per line, so the
# agent treats them as the lab's reference material, not as uploaded data. An upload can never
# take this name (safe_name strips leading dots).
REFERENCE_LIST = ".my_files"
# A follow-up's workspace holds what the earlier jobs did, for its model: a file, since a
# command line has a size limit (read by the agent; written by agent_sandbox.followup).
PREVIOUS_SUMMARY = ".previous.md"
MAX_NAME_CHARS = 1024  # a longer upload name, or a deeper one, is refused (the file system's own
MAX_NAME_PARTS = 32    # limits would fail later, with a less useful error)
_UNSAFE_CHARS = re.compile(r"[^\w.\- ()+,@=]", re.UNICODE)


class UnsafePath(ValueError):
    pass


def safe_join(root: Path, relative: str) -> Path:
    """`root / relative`, refusing absolute paths, `..` and anything outside root."""
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or not rel.parts:
        raise UnsafePath(f"unsafe path: {relative!r}")
    full = Path(root, *rel.parts)
    if os.path.commonpath([os.path.abspath(full), os.path.abspath(root)]) != os.path.abspath(root):
        raise UnsafePath(f"unsafe path: {relative!r}")
    return full


def safe_name(name: str) -> str:
    """A user's file name as a safe relative path (sub-folders kept).

    Refuses absolute paths and any `..` component rather than silently
    rewriting them, so a hostile name fails loudly.
    """
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").strip()
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"refused file name {short_name(name)}: it would leave the job folder")
    if len(name) > MAX_NAME_CHARS or len(path.parts) > MAX_NAME_PARTS:
        raise UnsafePath(f"refused file name {short_name(name)}: longer than {MAX_NAME_CHARS} characters "
                         f"or {MAX_NAME_PARTS} folder levels")
    parts = []
    for part in path.parts:
        if part in ("", "."):
            continue
        cleaned = _fit(_UNSAFE_CHARS.sub("_", part).strip(" .")[:200], 240)  # file systems count bytes
        if not cleaned:
            raise UnsafePath(f"refused file name {short_name(name)}")
        parts.append(cleaned)
    if not parts:
        raise UnsafePath(f"refused file name {short_name(name)}")
    return "/".join(parts)


def _fit(part: str, max_bytes: int) -> str:
    return part.encode()[:max_bytes].decode(errors="ignore")


def short_name(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:60] + "..." + name[-15:])


def reference_paths(workspace: Path) -> set[str]:
    """The workspace paths copied from my_files (empty when the workspace has no list)."""
    listing = Path(workspace) / REFERENCE_LIST
    if listing.is_symlink() or not listing.is_file():
        return set()
    return {line.strip() for line in listing.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()}
