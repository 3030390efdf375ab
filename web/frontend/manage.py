"""What an owner does with a job besides running it: rename, delete, rerun, follow up, share; the sample job.

    PATCH  /api/jobs/<id>          {"name": "..."}   rename ("" goes back to the name from its files)
    DELETE /api/jobs/<id>                            delete the job, its log and its files (not while active)
    POST   /api/jobs/<id>/rerun                      a new job with the same files, instructions and choices
    POST   /api/jobs/<id>/follow-up                  continue a finished job: form `instructions`, optional
                                                     `model`; the same inputs plus its results in /workspace/previous/
    POST   /api/jobs/<id>/share                      a read-only link (a new token each time; {"reuse": true}:
                                                     the current one if any)
    DELETE /api/jobs/<id>/share                      revoke the link
    POST   /api/jobs/sample                          run the bundled sample dataset

A share link `/shared/<token>` (pages.py) lets any browser read the job:
the token goes into that visitor's session, and `api.owned_job` accepts it for
reads (GET) only, as long as the job still carries the same token.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from agent_sandbox.events import ACTIVE
from agent_sandbox.followup import PREVIOUS, copy_inputs
from agent_sandbox.jobs import continue_from
from agent_sandbox.manifest import load_manifest
from agent_sandbox.paths import safe_join
from agent_sandbox.workspace import add_upload, job_workspace
from frontend.api import display_name, job_json, services
from frontend.choices import follows_instructions
from frontend.identity import current_owner
from frontend.storage import storage
from frontend.submission import submit_job

manage = Blueprint("manage", __name__, url_prefix="/api")

MAX_NAME = 200


def own_job(job_id: str) -> dict[str, Any]:
    """The caller's own job: a share link never allows changes."""
    job = services().store.get_job(job_id, owner=current_owner())
    if job is None:
        raise NotFound(f"no job {job_id!r} here")
    return job


@manage.patch("/jobs/<job_id>")
def rename_job(job_id):
    job = own_job(job_id)
    name = (request.get_json(silent=True) or {}).get("name")
    if not isinstance(name, str):
        raise BadRequest('send JSON {"name": "..."}')
    name = " ".join(name.split())[:MAX_NAME]
    services().store.update_job(job["id"], name=name)
    return jsonify(job_json(services().store.get_job(job["id"])))


@manage.delete("/jobs/<job_id>")
def delete_job(job_id):
    job = own_job(job_id)
    if job["status"] in ACTIVE:
        raise Conflict("this job is still queued or running; cancel it before deleting it")
    storage().remove(job["id"])
    return "", 204


@manage.post("/jobs/<job_id>/rerun")
def rerun_job(job_id):
    job = own_job(job_id)
    s = current_app.config["SETTINGS"]
    old = job_workspace(s.data_dir, job["id"])

    def fill(workspace: Path) -> list[dict]:
        files = []
        for f in job["files"]:
            src = safe_join(old, f["name"])
            if src.is_symlink() or not src.is_file():
                raise Conflict(f"the uploaded file {f['name']!r} of this job is no longer here")
            files.append(_link_or_copy(src, workspace, f["name"]))
        return files

    new = submit_job({"backend": job["backend"], "model": job["model"], "instructions": job["instructions"],
                      "env": job["env"], "name": job["name"]}, fill)
    return jsonify(job_json(new)), 201


@manage.post("/jobs/<job_id>/follow-up")
def follow_up(job_id):
    """A new job continuing a finished one; its model is told what that one did."""
    parent = own_job(job_id)
    s = current_app.config["SETTINGS"]
    instructions = request.form.get("instructions", "").strip()[:20000]
    model = request.form.get("model") or parent["model"]
    if not instructions:
        raise BadRequest("say what the follow-up should do")
    if model not in s.models:
        raise BadRequest(f"model {model!r} is not allowed here; choose one of {', '.join(s.models)}")
    if not follows_instructions(model):
        raise BadRequest(f"the model {model!r} cannot follow instructions, so it cannot continue a job; "
                         "choose an AI model")
    if parent["backend"] not in s.backends:
        raise BadRequest(f"backend {parent['backend']!r} is no longer allowed here")
    results = s.results_dir(parent["id"])
    if parent["status"] in ACTIVE or load_manifest(results) is None:
        raise Conflict("this job has no results yet; a follow-up continues a finished job")
    # Named after what it continues and what it was asked, so the history tells them apart.
    name = " ".join(f"{display_name(parent)} — {instructions}".split())
    fields = {"backend": parent["backend"], "model": model, "instructions": instructions, "env": parent["env"],
              "name": name[:MAX_NAME - 1] + "…" if len(name) > MAX_NAME else name, "parent": parent["id"]}

    def fill(workspace: Path) -> list[dict]:
        # The parent's own previous/ is not carried along: its summary says what was in it.
        copy_inputs(job_workspace(s.data_dir, parent["id"]), workspace, skip=PREVIOUS if parent["parent"] else "")
        # The whole chain's results: a record's "previous" is its parent job's id.
        fields["previous_summary"] = continue_from(
            workspace, results, lambda parent: s.results_dir(parent) if parent.isalnum() else None)
        return parent["files"]

    return jsonify(job_json(submit_job(fields, fill))), 201


@manage.post("/jobs/sample")
def sample_job():
    s = current_app.config["SETTINGS"]
    sample = s.sample_file
    if not sample or not sample.is_file():
        raise NotFound("no sample dataset is installed on this server")

    def fill(workspace: Path) -> list[dict]:
        with open(sample, "rb") as data:
            dest = add_upload(workspace, sample.name, data)
        return [{"name": dest.name, "size": dest.stat().st_size}]

    new = submit_job({"backend": s.default_backend, "model": s.default_model, "instructions": "",
                      "env": {}, "name": f"Sample: {sample.name}"}, fill)
    return jsonify(job_json(new)), 201


def _link_or_copy(src: Path, workspace: Path, name: str) -> dict:
    # Inputs are read-only to every sandbox, so the new job may share the old one's file.
    dest = safe_join(workspace, name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError:
        with open(src, "rb") as data:
            dest = add_upload(workspace, name, data)
    return {"name": name, "size": dest.stat().st_size}


@manage.post("/jobs/<job_id>/share")
def share_job(job_id):
    """A new read-only link; with {"reuse": true}, the one already given out if there is one
    (a link to one table view or plot then keeps the job's other links working)."""
    job = own_job(job_id)
    body = request.get_json(silent=True)
    reuse = isinstance(body, dict) and body.get("reuse") is True
    token = job["share_token"] if reuse and job["share_token"] else secrets.token_urlsafe(24)
    if token != job["share_token"]:
        services().store.update_job(job["id"], share_token=token)
    return jsonify(url=url_for("pages.shared_link", token=token, _external=True), token=token)


@manage.delete("/jobs/<job_id>/share")
def unshare_job(job_id):
    job = own_job(job_id)
    services().store.update_job(job["id"], share_token=None)
    return "", 204
