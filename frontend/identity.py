"""Who is asking (the job owner) and CSRF protection.

Each visitor gets a random identity in Flask's signed, HttpOnly session
cookie. When APP_TRUSTED_USER_HEADER is set (only behind a proxy that
authenticates users and sets that header itself), the header names the user.

CSRF: the session also holds a random token. Every POST must send it back in
the `X-CSRF-Token` header; the pages read it from a <meta> tag and scripts
from `GET /api/session`. A cross-site page can neither read the token nor
set that header, so it cannot forge a request.
"""

from __future__ import annotations

import hmac
import secrets

from flask import current_app, request, session
from werkzeug.exceptions import Forbidden

CSRF_HEADER = "X-CSRF-Token"
SHARED_KEY = "shared"  # session: {job_id: token} of the jobs this browser opened through share links
MAX_SHARED = 50


def current_owner() -> str:
    header = current_app.config["SETTINGS"].trusted_user_header
    if header:
        user = request.headers.get(header, "").strip()
        if user:
            return "user:" + user
    owner = session.get("owner")
    if not owner:
        owner = session["owner"] = "visitor:" + secrets.token_urlsafe(18)
        session.permanent = True
    return owner


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
        session.permanent = True
    return token


def check_csrf() -> None:
    """Before every state-changing request."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER, "")
    expected = session.get("csrf", "")
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        raise Forbidden("missing or wrong CSRF token: send the X-CSRF-Token header "
                        "with the token from GET /api/session")


def remember_shared(job_id: str, token: str) -> None:
    """This browser opened `job_id`'s share link: it may read the job while the job keeps `token`."""
    shared = {k: v for k, v in (session.get(SHARED_KEY) or {}).items() if k != job_id}
    shared[job_id] = token
    session[SHARED_KEY] = dict(list(shared.items())[-MAX_SHARED:])
    session.permanent = True


def shared_token(job_id: str) -> str | None:
    """The share token this browser holds for `job_id`, if any."""
    return (session.get(SHARED_KEY) or {}).get(job_id)
