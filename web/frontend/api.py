"""The JSON API (the pages use it; so do scripts and tests). Errors are JSON too."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, send_file, url_for
from werkzeug.exceptions import BadRequest, NotFound, ServiceUnavailable, TooManyRequests

from agent_sandbox import events as ev
from agent_sandbox.spec import Limits
from frontend import reports
from frontend import results as res
from frontend.choices import UnknownOption, instructions_applied, with_options
from frontend.guard import RETRY_AFTER, QuietLog
from frontend.identity import client_address, csrf_token, current_owner, job_owner, shared_token
from frontend.readable import Unreadable, check_uploads
from frontend.sse import SSE_HEADERS
from frontend.storage import InsufficientStorage, storage
from frontend.submission import TooManyJobs, submit_job
from frontend.uploads import UploadError, save_uploads

api = Blueprint("api", __name__, url_prefix="/api")
quiet = QuietLog(logging.getLogger(__name__))


def services():
    return current_app.extensions["jobs"]


def owned_job(job_id: str) -> dict[str, Any]:
    """The caller's job, or 404 (another owner's job is indistinguishable from none).

    Reads (GET) also reach a job whose share link this browser opened, while the
    link holds; `g.shared_view` then tells the pages to offer no changes.
    """
    store = services().store
    job = store.get_job(job_id, owner=current_owner())
    g.shared_view = False
    if job is None and request.method in ("GET", "HEAD"):
        job = store.shared_job(job_id, shared_token(job_id) or "")
        g.shared_view = job is not None
    if job is None:
        raise NotFound(f"no job {job_id!r} here")
    return job


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    store = services().store
    end = job["finished"] or (time.time() if job["started"] else None)
    return {
        "id": job["id"], "name": display_name(job), "status": job["status"], "created": job["created"],
        "started": job["started"], "finished": job["finished"],
        "duration": round(end - job["started"], 3) if end and job["started"] else None,
        "backend": job["backend"], "model": job["model"], "instructions": job["instructions"],
        "instructions_applied": instructions_applied(job["model"], job["instructions"]),
        "files": job["files"], "limits": job["limits"], "reason": job["reason"],
        "error": job["error"], "exit_code": job["exit_code"], "events": job["last_seq"],
        "queue_position": store.queue_position(job), "parent": job["parent"] or None,
        "usage": job_usage(job),
        "urls": {"page": url_for("pages.job_page", job_id=job["id"]),
                 "events": url_for("api.job_events", job_id=job["id"]),
                 "outputs": url_for("api.job_outputs", job_id=job["id"]),
                 "zip": url_for("api.job_zip", job_id=job["id"]),
                 "tables": url_for("explore.tables_json", job_id=job["id"]),
                 "follow_up": url_for("manage.follow_up", job_id=job["id"])},
    }


def job_usage(job: dict[str, Any]) -> dict[str, int] | None:
    """Model calls and tokens so far, as the host's relay counted them (None for offline jobs)."""
    if job["model"].partition(":")[0] not in ("openai", "anthropic"):
        return None
    last = services().store.last_event(job["id"], ev.USAGE)
    if last is None:
        return {"calls": 0, "total_tokens": 0}
    d = last["data"]
    return {"calls": d.get("calls", 0), "total_tokens": d.get("job_tokens", 0), "max_tokens": d.get("max_tokens", 0)}


def job_limits(job: dict[str, Any]) -> Limits:
    """The limits the job ran (or will run) with (stored maybe by an older version: see Limits.restore)."""
    defaults = current_app.config["SETTINGS"].limits
    return Limits.restore(job["limits"], defaults) if job["limits"] else defaults


def display_name(job: dict[str, Any]) -> str:
    """The owner's name for the job, else one made from its files."""
    if job.get("name"):
        return job["name"]
    names = [f["name"] for f in job.get("files") or []]
    if len(names) <= 2:
        return " + ".join(names) or "(no files)"
    return f"{names[0]} + {len(names) - 1} more"


@api.get("/session")
def session_info():
    s = current_app.config["SETTINGS"]
    return jsonify(owner=job_owner(), csrf_token=csrf_token(), backends=s.backends,
                   models=s.models, default_backend=s.default_backend, default_model=s.default_model,
                   max_files=s.max_files, max_file_bytes=s.max_file_bytes,
                   max_request_bytes=s.max_request_bytes, preview_bytes=s.limits.preview_bytes,
                   max_results_bytes=s.limits.max_total_bytes)


@api.post("/jobs")
def create_job():
    s = current_app.config["SETTINGS"]
    svc = services()
    try:
        owner, address = job_owner(), client_address()
    except TooManyRequests:  # refused before reading a large body: read it, so the client sees why
        _drain_body()
        raise
    if reason := svc.executor.admission_error(owner, address):
        _drain_body()
        raise TooManyJobs(reason)
    try:
        storage().check_room(owner)   # the owner's quota on disk
    except InsufficientStorage:
        _drain_body()
        raise
    form = request.form  # parses the body: files stream to capped temp files
    backend = form.get("backend") or s.default_backend
    model = form.get("model") or s.default_model
    if backend not in s.backends:
        raise BadRequest(f"backend {backend!r} is not allowed here; choose one of {', '.join(s.backends)}")
    if model not in s.models:
        raise BadRequest(f"model {model!r} is not allowed here; choose one of {', '.join(s.models)}")
    try:  # the offline analysis's options (checkboxes) become the instruction lines it recognises
        instructions = with_options(form.get("instructions", "")[:20000], form.getlist("option"))
        check_uploads(request.files.getlist("files"))  # before a workspace, a job or a sandbox exists
    except (UnknownOption, Unreadable) as exc:
        raise BadRequest(str(exc)) from None
    env = {}
    if model.partition(":")[0] == "scripted" and form.get("script"):
        env["AGENT_SCRIPT"] = _script(form["script"])

    def fill(workspace):
        try:
            return save_uploads(request.files.getlist("files"), workspace, s.max_files, s.max_file_bytes)
        except UploadError as exc:
            raise BadRequest(str(exc)) from None

    job = submit_job({"backend": backend, "model": model, "instructions": instructions, "env": env}, fill)
    return jsonify(job_json(job)), 201


def _script(text: str) -> str:
    try:
        actions = json.loads(text)
    except ValueError:
        raise BadRequest("script must be a JSON list of actions") from None
    if not isinstance(actions, list):
        raise BadRequest("script must be a JSON list of actions")
    return json.dumps(actions)


def _drain_body() -> None:
    # Read (and drop) the upload so the client sees our answer instead of a reset connection.
    stream = request.stream
    while stream.read(1024 * 1024):
        pass


@api.get("/jobs")
def list_jobs():
    return jsonify(jobs=[job_json(j) for j in services().store.list_jobs(current_owner())])


@api.get("/jobs/<job_id>")
def get_job(job_id):
    return jsonify(job_json(owned_job(job_id)))


@api.post("/jobs/<job_id>/cancel")
def cancel_job(job_id):
    job = owned_job(job_id)
    services().executor.cancel(job["id"])
    return jsonify(job_json(services().store.get_job(job["id"]))), 202


@api.get("/jobs/<job_id>/events")
def job_events(job_id):
    job = owned_job(job_id)
    after = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        after = max(0, int(after))
    except ValueError:
        raise BadRequest("Last-Event-ID / after must be an event number") from None
    svc = services()
    owner, address = current_owner(), client_address()
    link = (shared_token(job["id"]) or "") if g.shared_view else ""
    if refused := svc.streams.acquire(owner, address, link):  # caps per owner, address, share link, in all
        status, why = refused
        quiet.log(logging.WARNING, "refusing live logs (%s): %s", address, why, key=why[:40])
        raise (TooManyRequests if status == 429 else ServiceUnavailable)(why, retry_after=RETRY_AFTER)
    release = svc.streams.releaser(owner, address, link)
    handoff = request.environ.get("frontend.handoff")
    if handoff is not None:
        # Our server: it sends these headers (after_request has added its own), then
        # gives the socket to the hub, whose one selector thread writes the events.
        handoff(svc.hub, job["id"], after, release)
        body: Iterable[bytes] = iter(())
    else:  # any other WSGI server: a generator on one of its threads
        body = Releasing(svc.hub.stream(job["id"], after, current_app.config["SETTINGS"].heartbeat_seconds),
                         release)
    return Response(body, mimetype="text/event-stream", headers=SSE_HEADERS)


class Releasing:
    """A response body that gives its stream's place back when the server closes it
    (a generator's own `finally` would not run if it never started)."""

    def __init__(self, body: Iterator[bytes], release):
        self.body, self.release = body, release

    def __iter__(self) -> Iterator[bytes]:
        return self.body

    def close(self) -> None:
        try:
            self.body.close()
        finally:
            self.release()


@api.get("/jobs/<job_id>/outputs")
def job_outputs(job_id):
    job = owned_job(job_id)
    manifest = res.load_manifest(current_app.config["SETTINGS"].results_dir(job["id"]))
    if manifest is None:
        return jsonify(ready=False, status=job["status"], files=[], skipped=[])
    return jsonify(ready=True, status=job["status"], **manifest)


@api.get("/jobs/<job_id>/outputs/<path:path>")
def job_output_file(job_id, path):
    job = owned_job(job_id)
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    manifest = res.load_manifest(results)
    full = res.listed_file(results, manifest, path)
    if full is None:
        raise NotFound(f"no output file {path!r} in this job")
    preview_bytes = job_limits(job).preview_bytes
    kind = res.content_type(path)
    attach = bool(request.args.get("download")) or kind == res.DOWNLOAD
    source = full
    if path.lower().endswith((".html", ".htm")) and full.stat().st_size <= preview_bytes:
        # Self-contained (plots embedded, phone viewport): it still works sandboxed and downloaded.
        source = reports.renderer().html(job["id"], results, manifest, path, preview_bytes).path or full
    resp = send_file(source, mimetype=kind, as_attachment=attach, download_name=full.name,
                     conditional=True, max_age=0)
    resp.headers["Content-Type"] = kind  # as is: send_file would add a second charset to text types
    resp.headers["Content-Security-Policy"] = res.CSP_SANDBOX
    return resp


@api.get("/jobs/<job_id>/preview/<path:path>")
def job_output_preview(job_id, path):
    job = owned_job(job_id)
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    full = res.listed_file(results, res.load_manifest(results), path)
    if full is None or not path.lower().endswith(res.TABLE_TYPES):
        raise NotFound(f"no table {path!r} in this job")
    try:
        return jsonify(path=path, **res.preview_table(full))
    except Exception as exc:  # a malformed file is the agent's output, not our crash
        return jsonify(path=path, columns=[], rows=[], error=f"cannot preview: {exc}"), 422


@api.get("/jobs/<job_id>/outputs.zip")
def job_zip(job_id):
    job = owned_job(job_id)
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    manifest = res.load_manifest(results)
    if manifest is None:
        abort(409, "this job has no results yet")
    name = res.zip_name(display_name(job), job["id"])
    return Response(res.stream_zip(results, manifest, name), mimetype="application/zip",
                    headers={"Content-Disposition": res.attachment(name + ".zip")})
