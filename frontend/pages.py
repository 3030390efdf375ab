"""Server-rendered pages: upload + history (/), live job view (/jobs/<id>)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, render_template, url_for

from frontend import results as res
from frontend.api import job_json, owned_job, services
from frontend.identity import current_owner

pages = Blueprint("pages", __name__)


@pages.get("/")
def index():
    s = current_app.config["SETTINGS"]
    jobs = [job_json(j) for j in services().store.list_jobs(current_owner())]
    return render_template("index.html", jobs=jobs, settings=s)


@pages.get("/jobs/<job_id>")
def job_page(job_id):
    job = job_json(owned_job(job_id))
    return render_template("job.html", job=job, now=time.time(), results=results_context(job),
                           settings=current_app.config["SETTINGS"])


@pages.get("/jobs/<job_id>/results")
def job_results(job_id):
    """The results panel alone; the live page loads it when the run ends."""
    job = job_json(owned_job(job_id))
    return render_template("_results.html", job=job, results=results_context(job))


def results_context(job: dict) -> dict | None:
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    manifest = res.load_manifest(results)
    if manifest is None:
        return None
    ctx = res.describe(manifest)
    output_url = lambda p: url_for("api.job_output_file", job_id=job["id"], path=p)  # noqa: E731
    report = res.find_report(manifest)
    ctx["report_html"] = None
    if "md" in report:
        full = res.listed_file(results, manifest, report["md"])
        if full is not None:
            text = full.read_text(encoding="utf-8", errors="replace")[:500_000]
            ctx["report_html"] = res.render_markdown(text, report["md"], output_url)
    ctx["report"] = report
    ctx["previews"] = [preview(results, manifest, t["path"]) for t in ctx["tables"][:6]]
    ctx["url"] = output_url
    ctx["preview_url"] = lambda p: url_for("api.job_output_preview", job_id=job["id"], path=p)
    return ctx


def preview(results, manifest, path: str) -> dict:
    try:
        return {"path": path, **res.preview_table(res.listed_file(results, manifest, path))}
    except Exception as exc:  # a malformed table is shown as such, not a crash
        return {"path": path, "columns": [], "rows": [], "error": f"cannot preview: {exc}"}
