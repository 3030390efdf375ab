"""Uploads streamed to disk with limits, then placed in the job's workspace.

Werkzeug parses the multipart body in chunks and asks the request for a file
object per part; `UploadRequest` hands it a temporary file that refuses to
grow past the per-file limit, so a file is never held whole in memory and an
oversized one is stopped as soon as it crosses the limit.

Every other body (JSON, a form) has a limit of its own, APP_MAX_BODY_KB:
`limit_body` reads it before the view does, and refuses it with a 413 naming that
limit as soon as it is over (before a byte is read when its length is declared).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Request, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from agent_sandbox.workspace import add_upload


class CappedTempFile:
    """A temporary file that raises 413 once more than `max_bytes` are written to it."""

    def __init__(self, max_bytes: int, filename: str | None, tmp_dir: Path | None):
        self._file = tempfile.TemporaryFile(dir=tmp_dir)
        self._max = max_bytes
        self._name = filename or "upload"
        self._written = 0

    def write(self, data: bytes) -> int:
        self._written += len(data)
        if self._written > self._max:
            self._file.close()
            raise RequestEntityTooLarge(
                f"{self._name!r} is larger than the per-file limit of {_mb(self._max)}")
        return self._file.write(data)

    def __getattr__(self, name):  # read, seek, tell, close... go to the real file
        return getattr(self._file, name)


class UploadRequest(Request):
    max_file_bytes: int = 1 << 30
    tmp_dir: Path | None = None

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return CappedTempFile(self.max_file_bytes, filename, self.tmp_dir)


UPLOAD_ENDPOINTS = frozenset({"api.create_job"})   # the only views that take files


def limit_body() -> None:
    """Before every request: a body that is not an upload is read now, within APP_MAX_BODY_KB."""
    if request.endpoint in UPLOAD_ENDPOINTS or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    limit = current_app.config["SETTINGS"].max_body_bytes
    request.max_content_length = limit
    try:
        request.get_data(parse_form_data=True)   # kept: the view's get_json / form use it
        request.stream.read(1)   # a chunked body stops at the limit: one more byte says if there is more
    except RequestEntityTooLarge:
        size = f" ({_mb(request.content_length)})" if request.content_length else ""
        raise RequestEntityTooLarge(f"the request body{size} is larger than the limit of {limit // 1024} KB "
                                    "for anything but an upload (APP_MAX_BODY_KB)") from None


class UploadError(ValueError):
    pass


def save_uploads(files: list, workspace: Path, max_files: int, max_file_bytes: int) -> list[dict]:
    """Move the request's files into `workspace`; returns [{name, size}]."""
    files = [f for f in files if f and f.filename]
    if not files:
        raise UploadError("no files were uploaded; choose at least one file")
    if len(files) > max_files:
        raise UploadError(f"too many files: {len(files)} (the limit is {max_files} per job)")
    saved = []
    for f in files:
        try:
            dest = add_upload(workspace, f.filename, f.stream, max_file_bytes)
        except ValueError as exc:  # UnsafePath or over the limit
            raise UploadError(str(exc)) from None
        finally:
            f.stream.close()
        saved.append({"name": dest.relative_to(workspace).as_posix(), "size": dest.stat().st_size})
    return saved


def too_large(max_request_bytes: int, max_file_bytes: int, max_files: int,
              content_length: int | None) -> RequestEntityTooLarge:
    """The 413 for a request refused as a whole (werkzeug's own text names no limit)."""
    if content_length is not None and content_length > max_request_bytes:
        return RequestEntityTooLarge(
            f"the upload ({_mb(content_length)}) is larger than the limit of {_mb(max_request_bytes)} "
            f"per request (all files together; {_mb(max_file_bytes)} per file); send fewer or smaller files")
    return RequestEntityTooLarge(
        f"the upload is over a limit: {_mb(max_request_bytes)} per request (all files together), "
        f"{_mb(max_file_bytes)} per file, {max_files} files, 1 MB of text fields")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"
