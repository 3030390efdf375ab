"""A finished job's results: the manifest, single files, table previews, the report, the zip.

Only files listed in the job's manifest.json are ever served, each through
`safe_join` under the job's results folder, so no request path can reach
anything else. Agent-written HTML is served under `Content-Security-Policy:
sandbox`, so it cannot run scripts on our origin; a file of a type a browser
could run as script or style (.js, .css, ...) is served as a download
(`content_type`). Reports are rendered by reports.py.
"""

from __future__ import annotations

import json
import posixpath
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_sandbox.manifest import MANIFEST, load_manifest  # noqa: F401 (load_manifest: the pages read it here)
from agent_sandbox.paths import safe_join
from frontend.tables import Table, View

CHUNK = 1024 * 1024
PREVIEW_ROWS = 20
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
TABLE_TYPES = (".csv", ".tsv", ".parquet")
# Already compressed: stored as-is in the zip rather than deflated again.
COMPRESSED = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".parquet", ".zip", ".gz", ".xz", ".bz2", ".pdf")
TEXT_TYPES = {".md": "text/markdown", ".csv": "text/csv", ".tsv": "text/tab-separated-values",
              ".log": "text/plain", ".py": "text/x-python", ".json": "application/json",
              ".txt": "text/plain", ".sql": "text/plain", ".yaml": "text/plain", ".yml": "text/plain"}
# Agent-written files of any other type (.js, .css, .xml, ...) are downloads: served from our
# origin as what they are, one could run as script or style in a page of ours.
SAFE_TYPES = {**TEXT_TYPES, ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".svg": "image/svg+xml", ".html": "text/html", ".htm": "text/html"}
DOWNLOAD = "application/octet-stream"
CSP_SANDBOX = "sandbox"


def is_internal(path: str) -> bool:
    """Working files nobody needs: hidden folders (`.scratch/`), DuckDB WALs, partial copies, bytecode."""
    parts = path.split("/")
    return (any(p.startswith(".") for p in parts) or "__pycache__" in parts
            or path.lower().endswith((".wal", ".tmp", ".partial", ".pyc")))


def listed_file(results: Path, manifest: dict[str, Any] | None, path: str) -> Path | None:
    """The on-disk file for `path` if the manifest lists it, else None."""
    if not manifest or not any(f["path"] == path for f in manifest.get("files", [])):
        return None
    return regular_file(results, path)


def regular_file(results: Path, path: str) -> Path | None:
    """`results/path` if it is a regular file inside the folder (never through a link)."""
    full = safe_join(results, path)
    if full.is_symlink() or not full.is_file():
        return None
    return full


def content_type(path: str) -> str:
    """The type an output is served as: one a browser shows without running anything of ours
    (HTML only sandboxed), else application/octet-stream, which is served as a download."""
    kind = SAFE_TYPES.get(posixpath.splitext(path)[1].lower(), DOWNLOAD)
    if kind.startswith("text/") or kind in ("application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind


def describe(manifest: dict[str, Any]) -> dict[str, list]:
    """Group the manifest's files for the results page."""
    files = manifest.get("files", [])
    by_ext = lambda exts: [f for f in files if f["path"].lower().endswith(exts)]  # noqa: E731
    return {"images": by_ext(IMAGE_TYPES), "tables": by_ext(TABLE_TYPES), "files": files,
            "skipped": manifest.get("skipped", [])}


def preview_table(path: Path, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """The first rows of a CSV/TSV/Parquet file: {columns, rows, total_rows, types}.

    Read through `tables.Table`, so bounded whatever the agent wrote: a Parquet file's
    footer first (too large columns are never read), a memory limit per query, cells cut
    to tables.MAX_CELL characters before they reach Python."""
    view = Table(path).view(View(limit=rows))
    return {"columns": view["columns"], "rows": view["rows"], "total_rows": view["total"],
            "types": view["types"]}


def find_report(manifest: dict[str, Any]) -> dict[str, str]:
    """Paths of the report files, preferring top-level ones: {"md": ..., "html": ...}."""
    found: dict[str, str] = {}
    for f in sorted(manifest.get("files", []), key=lambda f: (f["path"].count("/"), f["path"])):
        name = posixpath.basename(f["path"]).lower()
        if name in ("report.md", "readme.md") and "md" not in found:
            found["md"] = f["path"]
        elif name in ("report.html", "report.htm") and "html" not in found:
            found["html"] = f["path"]
    return found


def zip_name(job_name: str, job_id: str) -> str:
    """The zip's name (and its top folder): the job's name in safe characters, else the job's id."""
    job_name = re.sub(r"\.(csv|tsv|txt|xlsx|xlsm|json|jsonl|parquet)$", "", job_name, flags=re.IGNORECASE)
    name = re.sub(r"[^\w.+-]+", "-", job_name, flags=re.ASCII).strip("-.")[:80]
    return name or f"job-{job_id}"


def attachment(filename: str) -> str:
    """A Content-Disposition for `filename` (ASCII already: zip_name)."""
    return f'attachment; filename="{filename}"'


class _ZipSink:
    """A write-only stream for zipfile; the generator drains it as it goes."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self._pos = 0

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def stream_zip(results: Path, manifest: dict[str, Any], folder: str) -> Iterator[bytes]:
    """The listed files plus the manifest as one zip, produced chunk by chunk (never whole in memory)."""
    sink = _ZipSink()
    with zipfile.ZipFile(sink, "w") as zf:
        manifest = {**manifest, "files": [f for f in manifest.get("files", []) if not is_internal(f["path"])]}
        for entry in manifest["files"]:
            src = regular_file(results, entry["path"])
            if src is None:
                continue
            method = zipfile.ZIP_STORED if src.suffix.lower() in COMPRESSED else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo.from_file(src, f"{folder}/{entry['path']}")
            info.compress_type = method
            with open(src, "rb") as inp, zf.open(info, "w", force_zip64=True) as out:
                while chunk := inp.read(CHUNK):
                    out.write(chunk)
                    yield sink.drain()
            yield sink.drain()
        zf.writestr(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2))
    yield sink.drain()
