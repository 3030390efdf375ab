"""Result tables and plots, one URL per view: the table explorer, the plot viewer, their
JSON, and the same pages under a share link.

    GET /jobs/<id>/tables/<table>?<view>        the explorer (sort, filter, page, columns)
    GET /jobs/<id>/plots/<path>                 one plot, full size, with the previous and next
    GET /shared/<token>/tables/<table>?<view>   the same, for whoever holds the share link
    GET /shared/<token>/plots/<path>
    GET /api/jobs/<id>/tables                   the job's tables
    GET /api/jobs/<id>/tables/<table>?<view>    {"columns", "rows", "total", ...}; &format=csv: the whole view

A view's URL is all it takes to see it again (tables.View). The explorer works
without JavaScript: its forms are GETs, which the server turns into the view's
canonical URL.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import BadRequest, NotFound, ServiceUnavailable

from frontend import results as res
from frontend import results_page
from frontend import tables as tbl
from frontend.api import job_json, owned_job, services
from frontend.guard import RETRY_AFTER
from frontend.identity import remember_shared, shared_token

explore = Blueprint("explore", __name__)
FORM_FIELDS = ("fcol", "fop", "fval", "col", "choose")   # the explorer's GET forms, folded into a view


class JobLinks:
    """Where a job's pages are for this visitor: /jobs/<id>/... for its owner, and
    /shared/<token>/... for a visitor who came through a share link, so that the address
    bar always holds a link that works for the next person it is forwarded to."""

    def __init__(self, job_id: str, token: str | None = None):
        self.job_id, self.token = job_id, token

    def page(self) -> str:
        if self.token:
            return url_for("pages.shared_link", token=self.token)
        return url_for("pages.job_page", job_id=self.job_id)

    def table(self, name: str, args: dict | None = None) -> str:
        if self.token:
            base = url_for("explore.shared_table", token=self.token, table=name)
        else:
            base = url_for("explore.table_page", job_id=self.job_id, table=name)
        return base + ("?" + urlencode(args, safe=",") if args else "")

    def plot(self, path: str) -> str:
        if self.token:
            return url_for("explore.shared_plot", token=self.token, path=path)
        return url_for("explore.plot_page", job_id=self.job_id, path=path)

    def output(self, path: str, download: bool = False) -> str:
        return url_for("api.job_output_file", job_id=self.job_id, path=path, **({"download": 1} if download else {}))

    def table_api(self, name: str, args: dict | None = None) -> str:
        return url_for("explore.table_json", job_id=self.job_id, table=name, **(args or {}))


def links_for(job: dict[str, Any]) -> JobLinks:
    """This request's links for `job` (call after owned_job or shared_job)."""
    return JobLinks(job["id"], shared_token(job["id"]) if g.get("shared_view") else None)


def shared_job(token: str) -> dict[str, Any]:
    """The job a share link opens; this browser may read it from now on (until revoked)."""
    job = services().store.shared_job(None, token)
    if job is None:
        raise NotFound("this share link does not open any job: it was revoked, or the job was deleted")
    remember_shared(job["id"], token)
    g.shared_view = True
    return job


# -- tables ------------------------------------------------------------------------------------

def job_tables(job: dict[str, Any]) -> tuple[Path, dict | None, dict[str, str]]:
    """(results folder, manifest, {table name: data file}) of a job."""
    results = current_app.config["SETTINGS"].results_dir(job["id"])
    manifest = res.load_manifest(results)
    if manifest is None:
        return results, None, {}
    paths = [f["path"] for f in manifest.get("files", []) if not res.is_internal(f["path"])]
    return results, manifest, tbl.find_tables(paths)


def open_table(job: dict[str, Any], name: str) -> tuple[tbl.Table, str]:
    results, manifest, tables = job_tables(job)
    path = tables.get(name)
    full = res.listed_file(results, manifest, path) if path else None
    if full is None:
        raise NotFound(f"no table {name!r} in this job")
    return _bounded(lambda: tbl.Table(full, _tmp_dir())), path


def _tmp_dir() -> Path:
    return current_app.config["SETTINGS"].data_dir / "tmp"


def _bounded(work):
    """Run a table query; its refusals become HTTP answers with one line saying why."""
    try:
        return work()
    except tbl.ViewError as exc:
        raise BadRequest(str(exc)) from None
    except tbl.TableBusy as exc:
        raise ServiceUnavailable(str(exc), retry_after=RETRY_AFTER) from None
    except Exception as exc:  # duckdb cannot read what the agent wrote: its problem, not a crash
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise BadRequest(f"this table cannot be read: {first}") from None


def form_redirect(table: tbl.Table, base_args) -> dict | None:
    """The explorer's forms (add a filter, choose columns) as the view's canonical query, or None."""
    if not any(k in base_args for k in FORM_FIELDS):
        return None
    merged: dict[str, Any] = {k: v for k, v in base_args.items(multi=True) if k not in FORM_FIELDS}
    col, op = base_args.get("fcol"), base_args.get("fop")
    if col and op:
        merged[f"{col}__{op}"] = base_args.get("fval", "") if op not in ("isnull", "notnull") else "1"
        merged.pop("offset", None)
    if "choose" in base_args:
        picked = set(base_args.getlist("col"))
        chosen = [c for c in table.columns if c in picked]
        merged.pop("columns", None)
        if chosen and chosen != table.columns:
            merged["columns"] = ",".join(chosen)
    return merged


@explore.get("/jobs/<job_id>/tables/<table>")
def table_page(job_id, table):
    return _table_page(owned_job(job_id), table)


@explore.get("/shared/<token>/tables/<table>")
def shared_table(token, table):
    return _table_page(shared_job(token), table)


def _table_page(raw: dict[str, Any], name: str):
    job = job_json(raw)
    links = links_for(raw)
    table, path = open_table(raw, name)
    if (canonical := form_redirect(table, request.args)) is not None:
        return redirect(links.table(name, canonical))
    error, result = None, None
    try:
        view = tbl.View.from_args(request.args, table.columns)
        result = _bounded(lambda: table.view(view))
    except (tbl.ViewError, BadRequest) as exc:
        view, error = tbl.View(), getattr(exc, "description", None) or str(exc)
    status = 400 if error else 200
    return render_template("explore.html", job=job, links=links, name=name, path=path, table=table,
                           view=view, result=result, error=error, ops=tbl.OPS, kind_of=tbl.kind_of,
                           shared_view=g.shared_view, limits=(20, 50, 100, 500)), status


@explore.get("/api/jobs/<job_id>/tables")
def tables_json(job_id):
    raw = owned_job(job_id)
    _, _, tables = job_tables(raw)
    links = JobLinks(raw["id"])
    return jsonify(tables=[{"name": name, "path": path, "urls": {"json": links.table_api(name),
                                                                 "page": links.table(name)}}
                           for name, path in tables.items()])


@explore.get("/api/jobs/<job_id>/tables/<table>")
def table_json(job_id, table):
    raw = owned_job(job_id)
    found, path = open_table(raw, table)
    args = request.args.copy()
    fmt = args.pop("format", "json")
    view = _bounded(lambda: tbl.View.from_args(args, found.columns))
    if fmt == "csv":
        return _csv_download(found, view, table)
    if fmt != "json":
        raise BadRequest("format must be json or csv")
    result = _bounded(lambda: found.view(view))
    return jsonify(table=table, path=path, columns=result["columns"], rows=result["rows"], total=result["total"],
                   types=result["types"], sort=view.to_args().get("sort"), limit=view.limit, offset=view.offset,
                   filters=[{"column": f.column, "op": f.op, "value": f.value} for f in view.filters])


def _csv_download(table: tbl.Table, view: tbl.View, name: str):
    """The whole view as CSV, written by DuckDB to a temporary file that goes as it is sent."""
    fd, tmp = tempfile.mkstemp(dir=_tmp_dir(), prefix="view-", suffix=".csv")
    os.close(fd)
    try:
        _bounded(lambda: table.export_csv(view, Path(tmp)))
        data = open(tmp, "rb")
    finally:
        os.unlink(tmp)  # the open file stays readable until it is sent
    return send_file(data, mimetype="text/csv; charset=utf-8", as_attachment=True,
                     download_name=f"{name}-view.csv", max_age=0)


# -- plots -------------------------------------------------------------------------------------

@explore.get("/jobs/<job_id>/plots/<path:path>")
def plot_page(job_id, path):
    return _plot_page(owned_job(job_id), path)


@explore.get("/shared/<token>/plots/<path:path>")
def shared_plot(token, path):
    return _plot_page(shared_job(token), path)


def _plot_page(raw: dict[str, Any], path: str):
    job = job_json(raw)
    results = current_app.config["SETTINGS"].results_dir(raw["id"])
    manifest = res.load_manifest(results)
    if manifest is None:
        raise NotFound("this job has no results yet")
    plots = results_page.build(results, manifest, raw, previews=False)["plots"]
    at = next((i for i, p in enumerate(plots) if p["path"] == path), None)
    if at is None:
        raise NotFound(f"no plot {path!r} in this job")
    plot = plots[at]
    svg = posixpath.splitext(path)[0] + ".svg"
    has_svg = not path.lower().endswith(".svg") and res.listed_file(results, manifest, svg) is not None
    return render_template("plot.html", job=job, links=links_for(raw), plot=plot, at=at, count=len(plots),
                           previous=plots[at - 1] if at > 0 else None,
                           next=plots[at + 1] if at + 1 < len(plots) else None,
                           svg=svg if has_svg else None, shared_view=g.shared_view)
