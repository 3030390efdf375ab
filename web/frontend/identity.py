"""Who is asking (the job owner) and CSRF protection.

Each visitor gets a random identity in Flask's signed, HttpOnly session
cookie, made when it first submits a job or asks GET /api/session (reading
pages needs none). When
APP_TRUSTED_USER_HEADER is set (only behind a proxy that authenticates users
and sets that header itself), the header names the user, on requests that come
from a proxy listed in APP_TRUSTED_PROXIES only.

CSRF: the session also holds a random token. Every POST must send it back in
the `X-CSRF-Token` header; the pages read it from a <meta> tag and scripts
from `GET /api/session`. A cross-site page can neither read the token nor
set that header, so it cannot forge a request.
"""

from __future__ import annotations

import hmac
import secrets
from math import ceil

from flask import current_app, request, session
from werkzeug.exceptions import Forbidden, TooManyRequests

from frontend import guard
from frontend.store import ANONYMOUS

CSRF_HEADER = "X-CSRF-Token"
SHARED_KEY = "shared"  # session: {job_id: token} of the jobs this browser opened through share links
MAX_SHARED = 50


def current_owner() -> str:
    """The caller's identity, or "" for a visitor who has none yet (and so owns nothing).

    The trusted user header names the user only on a request from a listed proxy
    (APP_TRUSTED_PROXIES, required with the header): anyone else could send it."""
    header = current_app.config["SETTINGS"].trusted_user_header
    if header and (request.remote_addr or "") in current_app.extensions["jobs"].proxies:
        user = request.headers.get(header, "").strip()
        if user:
            return "user:" + user
    return session.get("owner") or ""


def job_owner() -> str:
    """The caller's identity, made now for a first-time visitor (who submits a job, or starts a script).

    Each client address gets at most APP_NEW_VISITORS_PER_ADDRESS new identities a
    minute (429 beyond): a client minting cookies to get past the per-owner caps
    meets the per-address ones, and soon this."""
    owner = current_owner()
    if owner:
        return owner
    wait = current_app.extensions["jobs"].new_visitors.take(client_address())
    if wait:
        raise TooManyRequests("too many new visitors from your address in the last minute; "
                              f"try again in {ceil(wait)} s", retry_after=ceil(wait))
    owner = session["owner"] = ANONYMOUS + secrets.token_urlsafe(18)
    session.permanent = True
    return owner


def client_address() -> str:
    """The client's address: the connection's peer, or, when that is a trusted proxy
    (APP_TRUSTED_PROXIES), the address the proxies name in X-Forwarded-For."""
    proxies = current_app.extensions["jobs"].proxies
    return guard.client_address(request.remote_addr or "", request.headers.getlist("X-Forwarded-For"), proxies)


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
