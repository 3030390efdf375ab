"""Agent-written reports rendered once, in a process with a time limit, and kept.

report.html is served self-contained (images embedded) and Markdown files are shown
rendered. Both are hostile input: a file larger than APP_RENDER_MAX_MB is not
rendered at all, and the rest are rendered by `python -m frontend.render` (render.py),
at most APP_RENDER_PROCESSES at once, each ended after APP_RENDER_SECONDS. No request
thread does the work, so no report holds the server's other requests, however it was
written. What a render makes is kept under `<APP_DATA_DIR>/rendered/<job>/` and served
from there on every later view; a render that fails or runs out of time is kept as
such too (the file is then offered raw), so each file costs at most one render.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from flask import current_app
from werkzeug.exceptions import ServiceUnavailable

from frontend.guard import QuietLog
from frontend.render import IMAGE_TYPES

log = logging.getLogger(__name__)
quiet = QuietLog(log)
VERSION = "1"   # part of every cache key: a change to the renderer renders again
CACHE_FOLDER = "rendered"   # in APP_DATA_DIR: <job>/<key>.html


class Rendered(NamedTuple):
    path: Path | None   # the rendering, or None
    why: str            # why there is none ("" when there is)


class Busy(ServiceUnavailable):
    """Every render process is taken for longer than a render may last (503, Retry-After)."""


class ReportRenderer:
    def __init__(self, cache: Path, seconds: float, max_bytes: int, processes: int):
        self.cache, self.seconds, self.max_bytes = cache, seconds, max_bytes
        self._slots = threading.BoundedSemaphore(processes)
        self._keys: dict[str, list] = {}   # file -> [its lock, how many wait for it or hold it]
        self._lock = threading.Lock()

    def html(self, job_id: str, results: Path, manifest: dict[str, Any], path: str, max_image_bytes: int) -> Rendered:
        """report.html with its listed images (each at most `max_image_bytes`) embedded."""
        images = {f["path"]: f["size"] for f in manifest.get("files", []) if f["path"].lower().endswith(IMAGE_TYPES)}
        return self._render(job_id, results / path, {"kind": "html", "path": path, "results": str(results),
                                                      "images": images, "max_image_bytes": max_image_bytes})

    def markdown(self, job_id: str, source: Path, path: str, url_prefix: str) -> Rendered:
        """A Markdown output as HTML; its relative links go to `url_prefix` + the output's path."""
        return self._render(job_id, source, {"kind": "markdown", "path": path, "url_prefix": url_prefix})

    def _render(self, job_id: str, source: Path, job: dict[str, Any]) -> Rendered:
        size = source.stat().st_size
        if size > self.max_bytes:
            return Rendered(None, f"it is larger ({_mb(size)}) than the {_mb(self.max_bytes)} rendered here")
        out = self._cached(job_id, source, job)
        failed = out.with_suffix(".failed")
        with self._one_at_a_time(str(out)):   # one render per file, however many ask at once
            if not out.exists() and not failed.exists():
                self._run(source, job, out, failed)
        if out.exists():
            return Rendered(out, "")
        try:
            return Rendered(None, failed.read_text())
        except OSError:
            return Rendered(None, "it could not be rendered")

    def _cached(self, job_id: str, source: Path, job: dict[str, Any]) -> Path:
        st = source.stat()
        key = json.dumps([VERSION, st.st_size, st.st_mtime_ns, job], sort_keys=True)
        return self.cache / job_id / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".html")

    @contextmanager
    def _one_at_a_time(self, key: str) -> Iterator[None]:
        with self._lock:
            entry = self._keys.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._keys[key]

    def _run(self, source: Path, job: dict[str, Any], out: Path, failed: Path) -> None:
        if not self._slots.acquire(timeout=self.seconds * 2):
            raise Busy("reports are being rendered for other views; try again shortly")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            why = self._process(dict(job, source=str(source), output=str(partial)))
            if why is None:
                os.replace(partial, out)
            else:
                failed.write_text(why)
        finally:
            self._slots.release()
            partial.unlink(missing_ok=True)

    def _process(self, job: dict[str, Any]) -> str | None:
        """Run one render in its own process; None when it worked, else why not."""
        # Only what Python needs: the server's environment holds model keys, and this process reads hostile text.
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PATH": os.environ.get("PATH", ""),
               "LC_ALL": "C.UTF-8"}
        try:
            done = subprocess.run([sys.executable, "-m", "frontend.render"], input=json.dumps(job).encode(),
                                  capture_output=True, timeout=self.seconds, env=env)
        except subprocess.TimeoutExpired:
            quiet.log(logging.WARNING, "rendering %s took over %g s: offered raw", job["path"], self.seconds,
                      key="render-slow")
            return f"rendering it took longer than {self.seconds:g} s"
        if done.returncode != 0:
            quiet.log(logging.WARNING, "rendering %s failed: %s", job["path"],
                      done.stderr.decode(errors="replace").strip().splitlines()[-1:] or done.returncode,
                      key="render-failed")
            return "it could not be rendered"
        return None


def renderer() -> ReportRenderer:
    """The app's renderer (made at its first use)."""
    found = current_app.extensions.get("reports")
    if found is None:
        s = current_app.config["SETTINGS"]
        found = current_app.extensions.setdefault("reports", ReportRenderer(
            s.data_dir / CACHE_FOLDER, s.render_seconds, s.render_max_bytes, s.render_processes))
    return found


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"
