"""A finished job's results: the manifest, single files, table previews, the report, the zip.

Only files listed in the job's manifest.json are ever served, each through
`safe_join` under the job's results folder, so no request path can reach
anything else. Agent-written HTML is served under `Content-Security-Policy:
sandbox`, so it cannot run scripts on our origin.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import mimetypes
import posixpath
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from markdown_it import MarkdownIt

from agent_sandbox.manifest import MANIFEST, load_manifest  # noqa: F401 (load_manifest: the pages read it here)
from agent_sandbox.paths import safe_join
from agent_sandbox.agent.playbook.scripts.make_report import slug

CHUNK = 1024 * 1024
PREVIEW_ROWS = 20
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
TABLE_TYPES = (".csv", ".tsv", ".parquet")
# Already compressed: stored as-is in the zip rather than deflated again.
COMPRESSED = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".parquet", ".zip", ".gz", ".xz", ".bz2", ".pdf")
TEXT_TYPES = {".md": "text/markdown", ".csv": "text/csv", ".tsv": "text/tab-separated-values",
              ".log": "text/plain", ".py": "text/x-python", ".json": "application/json",
              ".txt": "text/plain", ".sql": "text/plain", ".yaml": "text/plain", ".yml": "text/plain"}
CSP_SANDBOX = "sandbox"
HEADING_ID_PREFIX = "report-"   # ids of a rendered report's headings


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
    ext = posixpath.splitext(path)[1].lower()
    if ext in TEXT_TYPES:
        kind = TEXT_TYPES[ext]
    else:
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
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
    """The first rows of a CSV/TSV/Parquet file: {columns, rows, note}."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        batch = next(pf.iter_batches(batch_size=rows), None)
        columns = pf.schema_arrow.names
        data = batch.to_pylist() if batch is not None else []
        types = {f.name: str(f.type) for f in pf.schema_arrow}
        return {"columns": columns, "rows": [[_cell(r.get(c)) for c in columns] for r in data],
                "total_rows": pf.metadata.num_rows, "types": types}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        head = f.read(64 * 1024)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(head, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
        reader = csv.reader(f, dialect)
        header = next(reader, [])
        body = [next(reader, None) for _ in range(rows)]
    return {"columns": header, "rows": [r for r in body if r is not None], "total_rows": None}


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


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


_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def render_markdown(text: str, base_path: str, url_for_output) -> str:
    """Markdown to HTML without any raw HTML; relative links and images point at our outputs."""
    tokens = _markdown.parse(text)
    base_dir = posixpath.dirname(base_path)

    def rewrite(url: str) -> str:
        if url.startswith("#"):   # the report's own contents: its headings' ids, below
            return "#" + HEADING_ID_PREFIX + url[1:]
        if not url or url.startswith("/") or ":" in url.split("/")[0]:
            return url
        target = posixpath.normpath(posixpath.join(base_dir, url.split("#")[0]))
        return url if target.startswith("..") else url_for_output(target)

    def walk(tokens):
        for tok in tokens:
            if tok.type == "image":
                tok.attrSet("src", rewrite(tok.attrGet("src") or ""))
            elif tok.type == "link_open":
                tok.attrSet("href", rewrite(tok.attrGet("href") or ""))
            if tok.children:
                walk(tok.children)

    walk(tokens)
    used: dict[str, int] = {}
    for heading, inline in zip(tokens, tokens[1:]):
        if heading.type == "heading_open":
            # GitHub's anchors (a report's table of contents links to them), prefixed so
            # they cannot clash with the page's own ids; repeats get -1, -2, ...
            anchor = slug(inline.content)
            n = used[anchor] = used.get(anchor, -1) + 1
            heading.attrSet("id", HEADING_ID_PREFIX + anchor + (f"-{n}" if n else ""))
    return _markdown.renderer.render(tokens, _markdown.options, {})


_IMG_SRC = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
PHONE_STYLE = ("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
               "<style>img{max-width:100%;height:auto}table{display:block;overflow-x:auto;max-width:100%}"
               "pre{white-space:pre-wrap;overflow-wrap:anywhere}</style>")
MAX_EMBED_BYTES = 20 * 1024 * 1024


def self_contained_html(results: Path, manifest: dict[str, Any], path: str, max_image_bytes: int) -> bytes:
    """An agent-written HTML page with its images embedded (data: URLs) and a phone viewport.

    It is served sandboxed (an opaque origin that sends no cookies), so images by
    relative path could not load; embedded, the page also works once downloaded.
    Only images the manifest lists, each under `max_image_bytes`, are embedded.
    """
    full = listed_file(results, manifest, path)
    text = full.read_text(encoding="utf-8", errors="replace")
    base = posixpath.dirname(path)
    budget = [MAX_EMBED_BYTES]

    def embed(match: re.Match) -> str:
        src = html.unescape(match.group(3))
        if not src or ":" in src.split("/")[0] or src.startswith(("/", "#")):
            return match.group(0)
        target = posixpath.normpath(posixpath.join(base, src.split("#")[0].split("?")[0]))
        image = listed_file(results, manifest, target) if not target.startswith("..") else None
        if (image is None or not target.lower().endswith(IMAGE_TYPES)
                or image.stat().st_size > min(max_image_bytes, budget[0])):
            return match.group(0)
        data = image.read_bytes()
        budget[0] -= len(data)
        kind = content_type(target).split(";")[0]
        return f"{match.group(1)}{match.group(2)}data:{kind};base64,{base64.b64encode(data).decode()}{match.group(2)}"

    text = _IMG_SRC.sub(embed, text)
    if not re.search(r"<meta[^>]+name\s*=\s*[\"']?viewport", text, re.IGNORECASE):
        head = re.search(r"<head[^>]*>", text, re.IGNORECASE)
        at = head.end() if head else 0
        text = text[:at] + PHONE_STYLE + text[at:]
    return text.encode("utf-8")


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
