"""Which uploads a reader handles, checked before a job (and its sandbox) exists.

The analysis reads tables: delimited text, Excel workbooks, JSON and Parquet.
Images, PDFs, documents and prose would only run a sandbox to fail, so the
browser refuses them by name (the page gets ACCEPTED and REFUSED) and the
server by name and by their first bytes (a `.txt` must look like rows of
columns; a `.parquet` must be Parquet), with one line naming each file and
what is accepted.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import IO

SNIFF_BYTES = 64 * 1024
TEXT = (".csv", ".tsv", ".tab", ".psv", ".dat", ".asc", ".prn")
TEXT_OR_PROSE = (".txt", "")      # tables when their lines hold columns
EXCEL = (".xlsx", ".xlsm")
JSON = (".json", ".jsonl", ".ndjson")
PARQUET = (".parquet", ".pq")
ACCEPTED = TEXT + (".txt",) + EXCEL + JSON + PARQUET
ACCEPTED_WORDS = "tables: CSV, TSV or other delimited text (.txt too), Excel .xlsx, JSON, JSON Lines or Parquet"
REFUSED = {  # what a file of this kind is, said back to the user
    ".png": "an image", ".jpg": "an image", ".jpeg": "an image", ".gif": "an image", ".tif": "an image",
    ".tiff": "an image", ".bmp": "an image", ".svg": "an image", ".webp": "an image", ".heic": "an image",
    ".pdf": "a PDF document", ".doc": "a Word document", ".docx": "a Word document", ".odt": "a document",
    ".rtf": "a document", ".md": "text (Markdown)", ".rst": "text", ".html": "a web page", ".htm": "a web page",
    ".ppt": "a presentation", ".pptx": "a presentation", ".zip": "an archive", ".gz": "an archive",
    ".tar": "an archive", ".7z": "an archive", ".py": "source code", ".r": "source code", ".ipynb": "a notebook",
    ".xls": "a legacy Excel file (save it as .xlsx)", ".mp4": "a video", ".mov": "a video", ".mp3": "audio",
    ".exe": "a program",
}
DELIMITERS = (",", "\t", ";", "|")
_NUMBERS = re.compile(r"^\s*[-+]?\d[\d.eE+-]*(\s+[-+]?\d[\d.eE+-]*)+\s*$")  # columns of numbers, space-separated


def extension(name: str) -> str:
    return posixpath.splitext(name.lower())[1]


def refusal(name: str, head: bytes) -> str | None:
    """Why no reader handles the file `name` starting with `head`, or None when one does."""
    ext = extension(name)
    if ext in REFUSED:
        return REFUSED[ext]
    if ext in EXCEL:
        return None if head.startswith(b"PK") else "not an Excel workbook (its content is something else)"
    if ext in PARQUET:
        return None if head.startswith(b"PAR1") else "not a Parquet file (its content is something else)"
    if ext in JSON:
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        return None if start in (b"{", b"[") or not head.strip() else "not JSON (it does not start with { or [)"
    if ext in TEXT or ext in TEXT_OR_PROSE:
        text = _decode(head)
        if text is None:
            return "binary data, not text"
        if ext in TEXT_OR_PROSE and text.strip() and not looks_tabular(text):
            return "text, not a table (no columns in its lines)"
        return None
    return f"a {ext} file, a format the analysis does not read"


def looks_tabular(text: str) -> bool:
    """Rows of columns: most of the first lines split on one delimiter into the same number of
    fields, or hold numbers separated by spaces (instrument exports)."""
    lines = [line for line in text.splitlines()[:40] if line.strip()]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]   # cut at the sniffing limit
    if not lines:
        return False
    for d in DELIMITERS:
        counts = [line.count(d) for line in lines]
        common = max(set(counts), key=counts.count)
        if common > 0 and counts.count(common) >= max(1, 0.6 * len(lines)):
            return len(lines) > 1 or d != ","
    return sum(bool(_NUMBERS.match(line)) for line in lines) >= max(1, 0.6 * len(lines))


def _decode(head: bytes) -> str | None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace")
    if b"\x00" in head:
        return None
    return head.decode("utf-8", errors="replace")


def check_uploads(files: Iterable) -> None:
    """Raise Unreadable naming every uploaded file (werkzeug FileStorage) no reader handles."""
    problems = []
    for f in files:
        if not f or not f.filename:
            continue
        why = refusal(f.filename, _head(f.stream))
        if why:
            problems.append(f"{f.filename} ({why})")
    if problems:
        raise Unreadable(f"{'this file' if len(problems) == 1 else 'these files'} cannot be analysed: "
                         f"{'; '.join(problems)}. Upload {ACCEPTED_WORDS}.")


def _head(stream: IO[bytes]) -> bytes:
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    return head


class Unreadable(ValueError):
    pass
