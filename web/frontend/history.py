"""History that survives the browser: a visitor's personal recovery link.

An anonymous visitor's jobs belong to its browser's cookie. The recovery link
brings them to another browser (or back after the cookie is gone): it is
shown once, only its hash is stored, making a new one or revoking it ends the
old one. Opening it asks first (a page that cannot change anything), so a link
planted by another site cannot switch a browser's identity; confirming is a
POST with the CSRF token. The browser's own jobs join the history it opens.
Users named by APP_TRUSTED_USER_HEADER need none: their jobs follow them.

    POST   /api/session/recovery     make the caller's link -> {"url"} (shown this once)
    DELETE /api/session/recovery     revoke it
    GET    /recover/<token>          the page that asks before opening the history here
    POST   /api/session/recover      {"token"}: this browser opens the link's history
"""

from __future__ import annotations

import hashlib
import secrets

from flask import Blueprint, current_app, jsonify, render_template, request, session, url_for
from werkzeug.exceptions import BadRequest, NotFound

from frontend.api import services
from frontend.identity import current_owner, job_owner
from frontend.store import ANONYMOUS

history = Blueprint("history", __name__)
GONE = "this recovery link does not open any history: it was revoked or replaced by a newer one"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def signed_in() -> bool:
    """Is the caller a user named by the trusted proxy's header (whose jobs follow them anyway)?"""
    return current_owner().startswith("user:")


@history.post("/api/session/recovery")
def make_recovery():
    if signed_in():
        raise BadRequest("you are signed in: your jobs follow you to any browser without a recovery link")
    owner = job_owner()
    token = secrets.token_urlsafe(24)
    services().store.set_recovery(owner, _hash(token))
    return jsonify(url=url_for("history.recover_page", token=token, _external=True)), 201


@history.delete("/api/session/recovery")
def revoke_recovery():
    owner = current_owner()
    if owner:
        services().store.revoke_recovery(owner)
    return "", 204


@history.get("/recover/<token>")
def recover_page(token):
    store = services().store
    owner = store.recovery_owner(_hash(token))
    if owner is None:
        raise NotFound(GONE)
    return render_template("recover.html", token=token, count=len(store.list_jobs(owner)),
                           already=owner == current_owner(), signed_in=signed_in())


@history.post("/api/session/recover")
def recover():
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise BadRequest('send JSON {"token": "..."} from the recovery link')
    if signed_in():
        raise BadRequest("you are signed in: your jobs follow you to any browser without a recovery link")
    store = services().store
    owner = store.recovery_owner(_hash(token))
    if owner is None:
        raise NotFound(GONE)
    mine = current_owner()
    moved = 0
    if mine and mine != owner and mine.startswith(ANONYMOUS):
        moved = store.move_jobs(mine, owner)   # this browser's own jobs join the history
        store.revoke_recovery(mine)             # its own link would now open nothing
    session["owner"] = owner
    session.permanent = True
    current_app.logger.info("a browser opened a history by its recovery link (%d of its jobs joined)", moved)
    return jsonify(jobs=len(store.list_jobs(owner)), joined=moved, home=url_for("pages.index"))
