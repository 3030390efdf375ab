"""Server-rendered pages: upload + history (/), live job view (/jobs/<id>), a rendered
Markdown output (/jobs/<id>/view/<path>), a share link (/shared/<token>: the job's page
under that address, so the address bar holds a link that works for whoever gets it next).
Tables and plots have their own pages (explore.py)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, render_template, url_for
from werkzeug.exceptions import NotFound

from agent_sandbox.events import Status
from agent_sandbox.paths import reference_paths
from agent_sandbox.workspace import job_workspace
from frontend import choices, logview, reports, results_page
from frontend import results as res
from frontend.api import job_json, job_limits, owned_job, services
from frontend.explore import JobLinks, links_for, shared_job
from frontend.identity import current_owner
from frontend.readable import ACCEPTED, ACCEPTED_WORDS, REFUSED

pages = Blueprint("pages", __name__)
SERVER_LOG_EVENTS = 5000
SERVER_LOG_BYTES = 2 * 1024 * 1024
pages.add_app_template_filter(logview.clock, "clock")
pages.add_app_template_filter(logview.duration, "duration")
pages.add_app_template_filter(logview.iso, "iso")
pages.add_app_template_filter(results_page.plain, "plain")


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
    owner = current_owner()
    return render_template("index.html", jobs=jobs, settings=s, sample=sample, choices=choices,
                           ai_models=[m for m in s.models if choices.follows_instructions(m)],
                           accepted=ACCEPTED, refused=REFUSED, accepted_words=ACCEPTED_WORDS,
                           signed_in=owner.startswith("user:"),
                           recovery_made=store.recovery_made(owner) if owner else None)


@pages.get("/jobs/<job_id>")
def job_page(job_id):
    return _job_page(owned_job(job_id))


@pages.get("/shared/<token>")
def shared_link(token):
    """A read-only link: this browser may read the job until the owner revokes the link."""
    return _job_page(shared_job(token))


def _job_page(raw: dict):
    job = job_json(raw)
    s = current_app.config["SETTINGS"]
    links = links_for(raw)
    # The server-rendered log (for pages without JavaScript) holds the last events of a long run,
    # within a byte budget: however much a run printed, a view reads this much at most.
    events = services().store.recent_events(raw["id"], SERVER_LOG_EVENTS, SERVER_LOG_BYTES)
    skipped = events[0]["seq"] - 1 if events else raw["last_seq"]
    steps = [e["step"] for e in events if e.get("type") == "step" and e.get("step")]
    results = results_context(job, links)
    follow_models = [m for m in s.models if choices.follows_instructions(m)]
    return render_template(
        "job.html", job=job, now=time.time(), results=results, links=links,
        log=logview.build_log(events), phase=logview.phase(events, job["status"], partial=skipped > 0),
        phases=logview.PHASES, reached=logview.reached(events, job["status"], partial=skipped > 0),
        outcomes=logview.OUTCOMES, chips=logview.file_states(events, [f["name"] for f in job["files"]], job["status"]),
        last_step=steps[-1] if steps else None, shared_view=g.shared_view, log_skipped=skipped, settings=s,
        choices=choices,
        references=_references(raw), options=choices.chosen_options(job["instructions"]),
        free_text=choices.free_text(job["instructions"]), follow_models=follow_models,
        can_continue=bool(follow_models) and not (results and results["no_table"]))


def _references(job: dict) -> list[str]:
    """The reference files the operator added to every job (my_files/), by name."""
    workspace = job_workspace(current_app.config["SETTINGS"].data_dir, job["id"])
    return sorted(reference_paths(workspace)) if workspace.is_dir() else []


@pages.get("/jobs/<job_id>/results")
def job_results(job_id):
    """The results panel alone; the live page loads it when the run ends."""
    raw = owned_job(job_id)
    job = job_json(raw)
    return render_template("_results.html", job=job, results=results_context(job, links_for(raw)),
                           links=links_for(raw))


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
    return render_template("view.html", job=job, path=path, body=body, size=size, why=why, links=links_for(raw),
                           raw_url=url_for("api.job_output_file", job_id=job["id"], path=path))


def _rendered(job_id: str, full, path: str) -> tuple[str | None, str]:
    """A Markdown output as HTML (rendered once, in a process with a time limit), or why not;
    in plain words (no option names or internal paths)."""
    prefix = url_for("api.job_output_file", job_id=job_id, path="-")[:-1]
    rendered = reports.renderer().markdown(job_id, full, path, prefix)
    body = rendered.path.read_text(encoding="utf-8") if rendered.path else None
    return (results_page.plain(body) if body is not None else None), rendered.why


def results_context(job: dict, links: JobLinks) -> dict | None:
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
