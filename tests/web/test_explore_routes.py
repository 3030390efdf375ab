"""Routes of issue 23 in process (the real app, a stand-in backend): table views as pages, JSON
and CSV; share links that keep their address and point at one view or plot; the recovery link;
uploads no reader handles refused before a job exists; instructions the model could not apply;
follow-ups only with a model that follows instructions, named after what they continue; the zip
named after the job."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from test_routes import Visitor
from web_helpers import StandInBackend

from frontend.app import create_app
from frontend.choices import OFFLINE_OPTIONS
from frontend.settings import Settings

ROWS = "\n".join(f"{i},{'ctrl' if i % 2 else 'drug'},{i * 1.5 if i % 5 else ''}" for i in range(1, 121))
TABLE = [{"kind": "write_file", "path": "t/t.csv", "content": "id,group,value\n" + ROWS + "\n"},
         {"kind": "write_file", "path": "t/plots/a.png", "content": "png a"},
         {"kind": "write_file", "path": "t/plots/b.png", "content": "png b"},
         {"kind": "write_file", "path": "t/plots/b.svg", "content": "<svg xmlns='http://www.w3.org/2000/svg'/>"},
         {"kind": "finish", "message": "done"}]


@pytest.fixture
def app(tmp_path):
    settings = Settings(data_dir=tmp_path / "app", models=["scripted", "offline", "openai:test-model"],
                        secret_key="route-tests", poll_seconds=0.05, max_active_per_owner=20)
    settings.resolve()
    app = create_app(settings, backend_factory=lambda name: StandInBackend(tmp_path / "scratch"))
    yield app
    app.extensions["jobs"].executor.stop()
    app.extensions["jobs"].hub.stop()


def test_a_table_view_is_a_url_as_json_page_and_csv(app):
    alice = Visitor(app)
    job = alice.run(TABLE)
    listed = alice.get(f"/api/jobs/{job['id']}/tables").json["tables"]
    assert [(t["name"], t["path"]) for t in listed] == [("t", "t/t.csv")]
    api = f"/api/jobs/{job['id']}/tables/t"
    view = alice.get(api + "?sort=-value&limit=3").json
    assert view["columns"] == ["id", "group", "value"] and view["total"] == 120
    assert [r[2] for r in view["rows"]] == [178.5, 177.0, 175.5], "the largest of all 120 rows first"
    filtered = alice.get(api, query_string={"group__exact": "drug", "value__gte": "100", "value__lte": "120",
                                            "sort": "value", "columns": "id,value"}).json
    assert filtered["columns"] == ["id", "value"]
    assert all(100 <= v <= 120 and i % 2 == 0 for i, v in filtered["rows"]) and filtered["total"] == len(filtered["rows"])
    assert alice.get(api + "?value__isnull=1").json["total"] == 24
    assert alice.get(api + "?group__contains=TR").json["total"] == 60
    page2 = alice.get(api + "?limit=50&offset=50").json
    assert page2["rows"][0][0] == 51 and page2["total"] == 120
    for bad, words in (("?sort=nope", "no such column"), ("?value__gte=abc", "not one"),
                       ("?value__between=1", "unknown filter"), ("?limit=x", "whole number")):
        resp = alice.get(api + bad)
        assert resp.status_code == 400 and words in resp.json["error"], (bad, resp.json)
    download = alice.get(api + "?sort=-value&value__gte=170&format=csv")
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.data.decode())))
    assert rows[0] == ["id", "group", "value"] and [float(r[2]) for r in rows[1:]] == [178.5, 177.0, 175.5, 174.0, 171.0]  # 115: missing

    page = alice.get(f"/jobs/{job['id']}/tables/t?sort=-value&group__exact=ctrl")
    text = " ".join(page.data.decode().split())
    assert page.status_code == 200 and "Rows 1–50 of 60" in text and "group equals ctrl" in text
    assert 'aria-sort="descending"' in text
    # The filter form (a GET without JavaScript) lands on the view's own URL.
    added = alice.get(f"/jobs/{job['id']}/tables/t", query_string={"sort": "-value", "fcol": "value", "fop": "lte",
                                                                    "fval": "10"})
    assert added.status_code == 302 and added.headers["Location"].endswith("?sort=-value&value__lte=10")
    chosen = alice.get(f"/jobs/{job['id']}/tables/t?choose=1&col=value&col=id")
    assert chosen.headers["Location"].endswith("?columns=id,value"), chosen.headers["Location"]
    assert alice.get(f"/jobs/{job['id']}/tables/t?sort=nope").status_code == 400
    assert Visitor(app).get(api).status_code == 404, "another visitor sees no table"


def test_share_links_keep_their_address_and_point_at_a_view_or_a_plot(app):
    alice, bob, carol = Visitor(app), Visitor(app), Visitor(app)
    job = alice.run(TABLE)
    link = alice.post(f"/api/jobs/{job['id']}/share").json
    token = link["token"]
    again = alice.post(f"/api/jobs/{job['id']}/share", json={"reuse": True}).json
    assert again["token"] == token, "reuse keeps the link already given out"
    page = bob.get(f"/shared/{token}")
    assert page.status_code == 200, "the job's page under the share address, not a redirect"
    text = page.data.decode()
    assert f'href="/shared/{token}/tables/t"' in text and f'href="/shared/{token}/plots/t/plots/a.png"' in text
    view = carol.get(f"/shared/{token}/tables/t?sort=-value&limit=2")   # forwarded: a third visitor
    assert view.status_code == 200 and "178.5" in view.data.decode() and "read-only" in view.data.decode()
    plot = carol.get(f"/shared/{token}/plots/t/plots/b.png").data.decode()
    assert "plot 2 of 2" in plot and f'href="/shared/{token}/plots/t/plots/a.png"' in plot
    assert "Download SVG" in plot and "Download PNG" in plot
    assert 'id="share-view"' not in plot, "a shared view changes nothing"
    assert alice.get(f"/jobs/{job['id']}/plots/t/plots/a.png").data.decode().count("Download SVG") == 0
    new = alice.post(f"/api/jobs/{job['id']}/share").json["token"]
    assert new != token and carol.get(f"/shared/{token}/tables/t").status_code == 404, "a new link ends the old"
    assert alice.http.delete(f"/api/jobs/{job['id']}/share", headers={"X-CSRF-Token": alice.csrf}).status_code == 204
    assert carol.get(f"/shared/{new}/plots/t/plots/a.png").status_code == 404


def test_a_recovery_link_brings_the_history_to_another_browser(app):
    alice = Visitor(app)
    job = alice.run(TABLE)
    made = alice.post("/api/session/recovery")
    assert made.status_code == 201
    url = made.json["url"]
    token = url.rsplit("/", 1)[1]
    other = Visitor(app)   # another browser, with a job of its own
    own = other.run(TABLE)
    page = other.get(f"/recover/{token}")
    assert page.status_code == 200 and "opens a history of 1 job" in page.data.decode()
    assert other.get(f"/api/jobs/{job['id']}").status_code == 404, "opening the page changes nothing"
    assert other.post("/api/session/recover", json={"token": token}, csrf="wrong").status_code == 403
    done = other.post("/api/session/recover", json={"token": token})
    assert done.status_code == 200 and done.json == {"jobs": 2, "joined": 1, "home": "/"}
    assert {j["id"] for j in other.get("/api/jobs").json["jobs"]} == {job["id"], own["id"]}
    assert {j["id"] for j in alice.get("/api/jobs").json["jobs"]} == {job["id"], own["id"]}, "one history now"
    assert alice.http.delete("/api/session/recovery", headers={"X-CSRF-Token": alice.csrf}).status_code == 204
    assert Visitor(app).get(f"/recover/{token}").status_code == 404, "revoked"
    assert Visitor(app).post("/api/session/recover", json={"token": token}).status_code == 404


def test_files_no_reader_handles_are_refused_before_a_job_exists(app):
    alice = Visitor(app)
    resp = alice.submit([], files={"plot.png": b"\x89PNG\r\n\x1a\nxx", "notes.txt": b"measured at station B\n",
                                   "data.csv": b"a,b\n1,2\n", "fake.parquet": b"not parquet"})
    assert resp.status_code == 400
    error = resp.json["error"]
    assert "plot.png (an image)" in error and "notes.txt (text, not a table" in error
    assert "fake.parquet (not a Parquet file" in error and "data.csv" not in error and "Upload tables: CSV" in error
    assert alice.get("/api/jobs").json["jobs"] == [], "no job, no workspace"
    ok = alice.submit([], files={"readings.txt": b"time\tod\n0\t0.1\n1\t0.2\n", "plate.tsv": b"x\n1\n"})
    assert ok.status_code == 201, ok.json


def test_instructions_the_model_cannot_follow_are_said_not_applied(app):
    alice = Visitor(app)
    files = {"data.csv": b"a,b\n1,2\n"}
    form = lambda **kw: {"files": [(io.BytesIO(b), n) for n, b in files.items()], **kw}  # noqa: E731
    free = alice.post("/api/jobs", data=form(model="offline", instructions="compare strain B"),
                      content_type="multipart/form-data").json
    assert free["instructions_applied"] is False
    option = alice.post("/api/jobs", data=form(model="offline", option="drop_duplicates"),
                        content_type="multipart/form-data").json
    assert option["instructions_applied"] is True
    assert option["instructions"] == OFFLINE_OPTIONS["drop_duplicates"].instruction
    bad = alice.post("/api/jobs", data=form(model="offline", option="sing"), content_type="multipart/form-data")
    assert bad.status_code == 400 and "unknown option" in bad.json["error"]
    end = alice.ended(free["id"])
    page = alice.get(f"/jobs/{free['id']}").data.decode()
    assert 'id="instructions-note"' in page and "were not applied" in page
    assert 'id="follow-up-open"' in page, ("an AI model is on offer: the job can be continued with it", end)
    assert "not applied" not in alice.get(f"/jobs/{option['id']}").data.decode()
    start = alice.get("/").data.decode()
    assert 'id="offline-notice"' in start and 'name="option" value="drop_duplicates"' in start


def test_the_offline_options_are_what_the_playbook_recognises():
    from agent_sandbox.agent.models.offline import DROP_DUPLICATES
    assert DROP_DUPLICATES.search(OFFLINE_OPTIONS["drop_duplicates"].instruction)


def test_follow_ups_need_a_model_that_follows_instructions_and_are_named_after_their_parent(app):
    alice = Visitor(app)
    parent = alice.run(TABLE)
    alice.http.patch(f"/api/jobs/{parent['id']}", json={"name": "Plate 7"}, headers={"X-CSRF-Token": alice.csrf})
    refused = alice.post(f"/api/jobs/{parent['id']}/follow-up", data={"instructions": "only B", "model": "offline"})
    assert refused.status_code == 400 and "cannot follow instructions" in refused.json["error"]
    child = alice.post(f"/api/jobs/{parent['id']}/follow-up", data={"instructions": "only strain B",
                                                                     "model": "openai:test-model"})
    assert child.status_code == 201 and child.json["name"] == "Plate 7 — only strain B"


def test_the_zip_is_named_after_the_job(app):
    alice = Visitor(app)
    job = alice.run(TABLE)
    alice.http.patch(f"/api/jobs/{job['id']}", json={"name": "Plate 7, March run"}, headers={"X-CSRF-Token": alice.csrf})
    resp = alice.get(f"/api/jobs/{job['id']}/outputs.zip")
    assert re.search(r'filename="Plate-7-March-run\.zip"', resp.headers["Content-Disposition"])
    import zipfile
    with zipfile.ZipFile(io.BytesIO(resp.data)) as zf:
        assert "Plate-7-March-run/t/t.csv" in zf.namelist()
    assert json.loads(alice.get(f"/api/jobs/{job['id']}").data)["urls"]["tables"] == f"/api/jobs/{job['id']}/tables"


def test_a_table_file_is_read_within_bounds(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from frontend import tables as tbl
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "note": ["x" * 300] * 3, "blob": [c * 100_000 for c in "BCD"]}), path)
    table = tbl.Table(path)
    assert set(table.oversized) == {"blob"}, "100 KB a row: over the footer's budget, never read"
    rows = table.view(tbl.View())["rows"]
    assert rows[0][0] == 1 and rows[0][1] == "x" * 199 + "…" and rows[0][2].startswith("(too large to show: ")
    for args in ({"sort": "blob"}, {"blob__contains": "B"}):
        with pytest.raises(tbl.ViewError, match="too large"):
            table.view(tbl.View.from_args(args, table.columns))
    glob = tmp_path / "all*.parquet"
    glob.write_bytes(path.read_bytes())
    with pytest.raises(tbl.ViewError, match="pattern"):
        tbl.Table(glob)


def test_recovery_links_are_kept_by_their_hash_on_both_databases(database):
    from frontend.store import JobStore
    store, other = JobStore(database), JobStore(database)   # two processes
    store.create_job({"id": "j1", "owner": "visitor:a", "backend": "local", "model": "offline"})
    store.create_job({"id": "j2", "owner": "visitor:b", "backend": "local", "model": "offline"})
    store.set_recovery("visitor:a", "hash-1")
    assert other.recovery_owner("hash-1") == "visitor:a" and other.recovery_made("visitor:a") is not None
    store.set_recovery("visitor:a", "hash-2")   # a new link ends the old one
    assert other.recovery_owner("hash-1") is None and other.recovery_owner("hash-2") == "visitor:a"
    assert other.move_jobs("visitor:b", "visitor:a") == 1
    assert [j["id"] for j in store.list_jobs("visitor:a")] == ["j2", "j1"] and store.list_jobs("visitor:b") == []
    other.revoke_recovery("visitor:a")
    assert store.recovery_owner("hash-2") is None and store.recovery_made("visitor:a") is None
    store.close()
    other.close()


def test_a_rendered_reports_wide_tables_scroll_in_a_box_reached_by_tab():
    from frontend import render
    out = render.render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n\n| c |\n|---|\n| 3 |\n", "report.md",
                                 lambda p: p)
    boxes = re.findall(r'<div class="table-scroll" tabindex="0" role="region" aria-label="([^"]+)"><table>', out)
    assert boxes == ["Table 1 of the report", "Table 2 of the report"] and out.count("</table>\n</div>") == 2
