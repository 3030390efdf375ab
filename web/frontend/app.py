"""The Flask app factory: settings, job store, event broadcaster, executor, routes.

    app = create_app()              # settings from the environment
    app = create_app(settings)      # tests build their own Settings

    executor = create_runner(settings)   # `--role runner`: jobs only, no pages

A process of role `all` (the default) serves pages, the API and event streams
and runs jobs; any number of processes of each role may share one database
(SQLite on one machine, PostgreSQL on many): each running job is leased by
the runner that claimed it (frontend/lease.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from frontend.api import api
from frontend.executor import JobExecutor
from frontend.explore import explore
from frontend.feed import FeedHub, NoViewers
from frontend.guard import RETRY_AFTER, Networks, QuietLog, RateLimit, StreamQuota
from frontend.history import history
from frontend.identity import check_csrf, csrf_token
from frontend.manage import manage
from frontend.pages import pages
from frontend.settings import Settings
from frontend.statuses import statuses_for_pages
from frontend.storage import Storage
from frontend.store import JobStore
from frontend.uploads import UploadRequest, limit_body, too_large

quiet = QuietLog(logging.getLogger("frontend.app"))
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")


class Services:
    def __init__(self, settings: Settings, store: JobStore, hub: FeedHub, executor: JobExecutor):
        self.settings, self.store, self.hub, self.executor = settings, store, hub, executor
        _, max_streams = settings.socket_caps()
        self.streams = StreamQuota(max_streams, settings.max_streams_per_owner, settings.max_streams_per_address,
                                   settings.max_streams_per_link)
        self.new_visitors = RateLimit(settings.new_visitors_per_address)
        self.proxies = Networks(settings.trusted_proxies)


def create_app(settings: Settings | None = None, run_jobs: bool | None = None, backend_factory=None) -> Flask:
    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(exist_ok=True)

    class Request(UploadRequest):
        max_file_bytes = settings.max_file_bytes

    Request.tmp_dir = tmp_dir

    app = Flask(__name__)
    app.request_class = Request
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="sandbox_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=365),
        # Write the cookie only when the session changed: a page's parallel requests (styles,
        # favicon) would otherwise each send back the cookie they started with, and one
        # arriving late undoes a change made meanwhile (a share link just opened).
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_PARTS=settings.max_files + 20,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,  # the text fields (instructions, script)
    )
    app.json.sort_keys = False
    store = JobStore(settings.store_target(), settings.database_connections)
    hub = FeedHub(store, settings.poll_seconds, settings.heartbeat_seconds)
    kwargs = {"backend_factory": backend_factory} if backend_factory else {}
    executor = JobExecutor(settings, store, hub, **kwargs)
    app.extensions["jobs"] = Services(settings, store, hub, executor)
    app.extensions["storage"] = Storage(settings, store).start_retention()   # quota per owner, retention
    if settings.runs_jobs() if run_jobs is None else run_jobs:
        executor.start()

    app.register_blueprint(api)
    app.register_blueprint(manage)
    app.register_blueprint(pages)
    app.register_blueprint(explore)
    app.register_blueprint(history)
    app.before_request(check_csrf)
    app.before_request(limit_body)   # JSON and form bodies: APP_MAX_BODY_KB (uploads have their own limits)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["statuses"] = statuses_for_pages()

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc, RequestEntityTooLarge) and exc.description == RequestEntityTooLarge.description:
            exc = too_large(settings.max_request_bytes, settings.max_file_bytes, settings.max_files,
                            request.content_length)
        if request.path.startswith("/api/") or not _wants_html():
            resp = jsonify(error=exc.description, status=exc.code)
        else:
            resp = app.make_response((render_template("error.html", error=exc), exc.code))
        resp.status_code = exc.code or 500
        if exc.code in (429, 503):
            resp.headers["Retry-After"] = str(getattr(exc, "retry_after", None) or RETRY_AFTER)
        return resp

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        quiet.log(logging.ERROR, "unhandled error: %r", exc, key=f"{type(exc).__name__}: {exc}"[:80], exc_info=True)
        return jsonify(error="internal error; the server log has the details", status=500), 500

    return app


def create_runner(settings: Settings | None = None, backend_factory=None) -> JobExecutor:
    """A process that runs jobs and serves nothing (`--role runner`); call `.start()`."""
    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.store_target(), settings.database_connections)
    kwargs = {"backend_factory": backend_factory} if backend_factory else {}
    return JobExecutor(settings, store, NoViewers(), **kwargs)


def _wants_html() -> bool:
    return request.accept_mimetypes.accept_html
