"""Server-rendered pages: upload + history (/), live job view (/jobs/<id>), a rendered
Markdown output (/jobs/<id>/view/<path>), a share link (/shared/<token>)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, redirect, render_template, url_for
from werkzeug.exceptions import NotFound

from agent_sandbox.events import Status
from frontend import logview, reports
from frontend import results as res
from frontend import results_page
from frontend.api import job_json, job_limits, owned_job, services
from frontend.identity import current_owner, remember_shared

pages = Blueprint("pages", __name__)
SERVER_LOG_EVENTS = 5000
SERVER_LOG_BYTES = 2 * 1024 * 1024
pages.add_app_template_filter(logview.clock, "clock")
pages.add_app_template_filter(logview.duration, "duration")
pages.add_app_template_filter(logview.iso, "iso")


@pages.get("/")
def index():
    s = current_app.config["SETTINGS"]
    store = services().store
    jobs = []
    for j in store.list_jobs(current_owner()):
        job = job_json(j)
        job["summary"] = _one_line(store.last_message(j["id"]) if j["status"] == Status.SUCCEEDED else j["reason"])
        jobs.append(job)
    sample = s.sample_file.name if s.sample_file and s.sample_file.is_file() else None
    return render_template("index.html", jobs=jobs, settings=s, sample=sample)


@pages.get("/jobs/<job_id>")
def job_page(job_id):
    raw = owned_job(job_id)
    job = job_json(raw)
    # The server-rendered log (for pages without JavaScript) holds the last events of a long run,
    # within a byte budget: however much a run printed, a view reads this much at most.
    events = services().store.recent_events(raw["id"], SERVER_LOG_EVENTS, SERVER_LOG_BYTES)
    skipped = events[0]["seq"] - 1 if events else raw["last_seq"]
    steps = [e["step"] for e in events if e.get("type") == "step" and e.get("step")]
    return render_template("job.html", job=job, now=time.time(), results=results_context(job),
                           log=logview.build_log(events), phase=logview.phase(events, job["status"], partial=skipped > 0),
                           phases=logview.PHASES, last_step=steps[-1] if steps else None,
                           shared_view=g.shared_view, log_skipped=skipped, settings=current_app.config["SETTINGS"])


@pages.get("/jobs/<job_id>/results")
def job_results(job_id):
    """The results panel alone; the live page loads it when the run ends."""
    job = job_json(owned_job(job_id))
    return render_template("_results.html", job=job, results=results_context(job))


@pages.get("/jobs/<job_id>/view/<path:path>")
def view_output(job_id, path):
    """A Markdown output rendered (images and links point at the job's outputs), with its raw file."""
    raw = owned_job(job_id)
    job = job_json(raw)
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    manifest = res.load_manifest(results)
    full = res.listed_file(results, manifest, path)
    if full is None or not path.lower().endswith(".md"):
        raise NotFound(f"no Markdown output {path!r} in this job")
    size = full.stat().st_size
    limit = job_limits(raw).preview_bytes
    body, why = None, f"it is larger ({size / 1048576:.1f} MB) than the {limit / 1048576:g} MB shown on a page"
    if size <= limit:
        body, why = _rendered(job["id"], full, path)
    return render_template("view.html", job=job, path=path, body=body, size=size, why=why,
                           raw_url=url_for("api.job_output_file", job_id=job["id"], path=path))


def _rendered(job_id: str, full, path: str) -> tuple[str | None, str]:
    """A Markdown output as HTML (rendered once, in a process with a time limit), or why not."""
    prefix = url_for("api.job_output_file", job_id=job_id, path="-")[:-1]
    rendered = reports.renderer().markdown(job_id, full, path, prefix)
    return (rendered.path.read_text(encoding="utf-8") if rendered.path else None), rendered.why


@pages.get("/shared/<token>")
def shared_link(token):
    """A read-only link: this browser may read the job until the owner revokes the link."""
    job = services().store.shared_job(None, token)
    if job is None:
        raise NotFound("this share link does not open any job: it was revoked, or the job was deleted")
    remember_shared(job["id"], token)
    return redirect(url_for("pages.job_page", job_id=job["id"]))


def results_context(job: dict) -> dict | None:
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    manifest = res.load_manifest(results)
    if manifest is None:
        return None
    ctx = results_page.build(results, manifest, job)
    ctx["url"] = lambda p: url_for("api.job_output_file", job_id=job["id"], path=p)
    ctx["view_url"] = lambda p: url_for("pages.view_output", job_id=job["id"], path=p)
    ctx["report_html"] = None
    md = ctx["report"].get("md")
    # Without profiles the agent's report is the only account of the findings: shown inline.
    if md and not any(t.get("profile_path") for t in ctx["tables"]):
        entry = next(f for f in ctx["files"] if f["path"] == md)
        full = res.listed_file(results, manifest, md)
        if full is not None and not entry.get("large"):
            try:
                ctx["report_html"] = _rendered(job["id"], full, md)[0]
            except reports.Busy:   # the page without it, rather than no page
                pass
    return ctx


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
