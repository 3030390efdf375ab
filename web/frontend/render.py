"""Rendering an agent-written report: report.html made self-contained, a Markdown file as HTML.

Both read hostile text, so both run in a process of their own with a time limit
(`python -m frontend.render`, started by reports.py, which caches what they make): this
module imports neither Flask nor the app. The HTML is read by a tokenizer whose time is
linear in its length (htmltags.py); Markdown by markdown-it, without raw HTML.

    echo '{"kind": "markdown", "source": ..., "output": ..., ...}' | python -m frontend.render
"""

from __future__ import annotations

import base64
import json
import mimetypes
import posixpath
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_sandbox.paths import UnsafePath, safe_join
from frontend.htmltags import start_tags

HEADING_ID_PREFIX = "report-"   # ids of a rendered report's headings
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
PHONE_STYLE = ("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
               "<style>img{max-width:100%;height:auto}table{display:block;overflow-x:auto;max-width:100%}"
               "pre{white-space:pre-wrap;overflow-wrap:anywhere}</style>")
MAX_EMBED_BYTES = 20 * 1024 * 1024   # images embedded in one page, in all
MEMORY_BYTES = 2048 * 1024 * 1024    # address space of a render process

ImageLoader = Callable[[str], "tuple[str, bytes] | None"]   # listed image path -> (type, bytes), or None


def _local_target(base_dir: str, url: str) -> str | None:
    """The output a relative URL in a file of `base_dir` points at, or None (absolute, outside, a fragment)."""
    if not url or ":" in url.split("/")[0] or url.startswith(("/", "#")):
        return None
    target = posixpath.normpath(posixpath.join(base_dir, url.split("#")[0].split("?")[0]))
    return None if target.startswith("..") else target


def self_contained_html(text: str, path: str, load_image: ImageLoader) -> str:
    """An agent-written HTML page with its images embedded (data: URLs) and a phone viewport.

    It is served sandboxed (an opaque origin that sends no cookies), so images by
    relative path could not load; embedded, the page also works once downloaded.
    Every byte but an embedded image's `src` value stays as the agent wrote it.
    """
    base_dir, budget = posixpath.dirname(path), MAX_EMBED_BYTES
    edits: list[tuple[int, int, str]] = []
    head_end, viewport = 0, False
    for tag in start_tags(text):
        if tag.name == "head" and not head_end:
            head_end = tag.end
        elif tag.name == "meta" and (name := tag.get("name")) and name.value.strip().lower() == "viewport":
            viewport = True
        elif tag.name == "img" and (src := tag.get("src")) and src.start >= 0:
            target = _local_target(base_dir, src.value)
            image = load_image(target) if target and target.lower().endswith(IMAGE_TYPES) else None
            if image is not None and len(image[1]) <= budget:
                budget -= len(image[1])
                edits.append((src.start, src.end, f'"data:{image[0]};base64,{base64.b64encode(image[1]).decode()}"'))
    if not viewport:
        edits.append((head_end, head_end, PHONE_STYLE))
    return _apply(text, sorted(edits, key=lambda e: e[0]))


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    out, at = [], 0
    for start, end, new in edits:
        out += [text[at:start], new]
        at = end
    out.append(text[at:])
    return "".join(out)


def _table_open(self, tokens, idx, options, env):
    # A wide table scrolls in its own box, which keyboard users reach with Tab (axe: serious otherwise).
    env["tables"] = env.get("tables", 0) + 1
    return (f'<div class="table-scroll" tabindex="0" role="region" aria-label="Table {env["tables"]} of the report">'
            + self.renderToken(tokens, idx, options, env))


def _table_close(self, tokens, idx, options, env):
    return self.renderToken(tokens, idx, options, env) + "</div>"


def render_markdown(text: str, base_path: str, url_for_output: Callable[[str], str]) -> str:
    """Markdown to HTML without any raw HTML; relative links and images point at our outputs."""
    from markdown_it import MarkdownIt

    from agent_sandbox.agent.playbook.scripts.make_report import slug

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    tokens = md.parse(text)
    base_dir = posixpath.dirname(base_path)

    def rewrite(url: str) -> str:
        if url.startswith("#"):   # the report's own contents: its headings' ids, below
            return "#" + HEADING_ID_PREFIX + url[1:]
        target = _local_target(base_dir, url)
        return url if target is None else url_for_output(target)

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
    return md.renderer.render(tokens, md.options, {})


def image_loader(results: Path, images: dict[str, int], max_bytes: int) -> ImageLoader:
    """Loads the listed images (path -> size, from the job's manifest) of at most `max_bytes`,
    as regular files inside `results`, never through a link."""
    def load(target: str) -> tuple[str, bytes] | None:
        if images.get(target, max_bytes + 1) > max_bytes:
            return None
        try:
            full = safe_join(results, target)
            if full.is_symlink() or not full.is_file():
                return None
            data = full.read_bytes()
        except (OSError, UnsafePath):
            return None
        kind = "image/svg+xml" if target.lower().endswith(".svg") else mimetypes.guess_type(target)[0]
        return (kind or "application/octet-stream"), data
    return load


def run(job: dict[str, Any]) -> None:
    """Render one file as `job` says, into job["output"]."""
    text = Path(job["source"]).read_text(encoding="utf-8", errors="replace")
    if job["kind"] == "html":
        load = image_loader(Path(job["results"]), job.get("images") or {}, job.get("max_image_bytes", 0))
        out = self_contained_html(text, job["path"], load)
    else:
        prefix = job["url_prefix"]
        out = render_markdown(text, job["path"], lambda p: prefix + _quote(p))
    Path(job["output"]).write_text(out, encoding="utf-8")


def _quote(path: str) -> str:
    from urllib.parse import quote
    return quote(path, safe="/")


def main() -> int:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    run(json.load(sys.stdin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
