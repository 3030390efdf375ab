"""Issue 23 in real Chromium, at 1366x900 and 390x844: the offline notice before and after
submit; a 1.2 M-row table sorted on the server (the true maximum first); a filter's URL in a
second browser; the recovery link; a share link forwarded to a third browser, then revoked;
a PNG refused before any job exists; the plot viewer; ranked findings and folding tables;
statuses after a cancel and a job with no table; axe-core on the start, job, shared, report,
explorer and plot pages; a trusted proxy's users whose jobs follow them.

One server and one browser for the module; the jobs they share are made once. Screenshots of
the explorer, the plot viewer and the offline notice go to $WEB_SCREENSHOTS (/tmp/screens).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from big_table import ROWS, TABLE, TRUE_MAX, write_action
from playwright.sync_api import expect
from web_helpers import REPO, Server, browser_context, wait_finished

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
SHOTS = Path(os.environ.get("WEB_SCREENSHOTS") or "/tmp/screens")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SAMPLE = REPO / "samples" / "plate_reader.csv"
AI = "openai:test-model"   # offered, never run here: the form shows what it would do

PLOTS_AND_PROFILES = """
import json, os, matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
for name, kind, rank, sev in [('assay', 'outliers', 1000, 'data'), ('reader', 'saturated', 100, 'instrument')]:
    os.makedirs(f'/outputs/{name}/plots', exist_ok=True)
    open(f'/outputs/{name}/{name}.csv', 'w').write('well,od\\nA1,0.1\\nA2,3.9\\n')
    for i in range(2):
        fig = plt.figure(figsize=(4, 3)); plt.plot([0, 1, 2], [i, 2, 1]); plt.title(f'{name} {i}')
        fig.savefig(f'/outputs/{name}/plots/{name}_{i}.png'); fig.savefig(f'/outputs/{name}/plots/{name}_{i}.svg')
        plt.close(fig)
    profile = {'table': name, 'rows_after': 2, 'columns_after': 2,
               'findings': [{'kind': kind, 'column': 'od', 'rows': [2], 'count': 1, 'rank': rank, 'severity': sev,
                             'labels': ['A2'], 'more': 0, 'detail': f'{kind} reading in A2'}],
               'plots': [{'kind': 'line', 'path': f'{name}/plots/{name}_{i}.png', 'title': f'{name} plot {i}'}
                         for i in range(2)]}
    json.dump(profile, open(f'/outputs/{name}/{name}.profile.json', 'w'))
"""


@pytest.fixture(scope="module")
def ux(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("ux23"), {"APP_MODELS": f"offline,scripted,{AI}"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def owner(ux):
    return ux.client()


@pytest.fixture(scope="module")
def big_job(ux, owner):
    """A job with the 1.2 M-row table, two small profiled tables with ranked findings, and plots."""
    job = owner.submit([write_action(), {"kind": "python", "code": PLOTS_AND_PROFILES}]).json()
    job = wait_finished(owner, job["id"], timeout=240)
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def offline_job(ux, owner):
    """The sample through the offline analysis, given an instruction it cannot follow (by the API)."""
    resp = owner.post("/api/jobs", data={"model": "offline", "instructions": "compare the strains"},
                      files=[("files", ("plate_reader.csv", SAMPLE.read_bytes()))])
    job = wait_finished(owner, resp.json()["id"])
    assert job["status"] == "succeeded" and job["instructions_applied"] is False
    return job


def shot(page, name: str, full_page: bool = False) -> str:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return str(path)


def errors_of(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    return errors


def no_sideways_scroll(page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"], page.url


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in found if v["impact"] in ("serious", "critical")]


def explorer_rows(page) -> list[list[str]]:
    return page.eval_on_selector_all("table.explore tbody tr",
                                     "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")


# -- instructions, honestly -------------------------------------------------------------------

@SIZES
def test_the_offline_notice_before_and_after_submit(ux, owner, offline_job, browser, viewport):
    context = browser_context(browser, ux, owner, viewport=viewport)
    page = context.new_page()
    errors = errors_of(page)
    page.goto(ux.base + "/")
    notice = page.locator("#offline-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("cannot follow written instructions")
    expect(page.locator("#instructions")).to_be_hidden()
    expect(page.locator("input[name=option][value=drop_duplicates]")).to_be_visible()
    notice.scroll_into_view_if_needed()
    shot(page, f"offline-notice-{'desktop' if viewport is DESKTOP else 'phone'}")
    page.select_option("select[name=model]", AI)   # an AI model: its instructions box, and where data goes
    expect(page.locator("#instructions")).to_be_visible()
    expect(page.locator("#offline-options")).to_be_hidden()
    expect(page.locator(f'.provider-notice[data-model="{AI}"]')).to_contain_text("are sent to the model's provider (OpenAI")
    page.select_option("select[name=model]", "offline")
    expect(page.locator("#offline-notice")).to_be_visible()
    # Submitted with the option: the job shows it as an option, and says nothing was left out.
    page.set_input_files("#file-input", str(SAMPLE))
    page.check("input[name=option][value=drop_duplicates]")
    page.click("#submit")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#options")).to_contain_text("Remove rows identical to an earlier row")
    expect(page.locator("#instructions-note")).to_have_count(0)
    # A job given free text the offline analysis cannot follow says so at the top, in view at once.
    page.goto(ux.base + offline_job["urls"]["page"])
    note = page.locator("#instructions-note")
    expect(note).to_contain_text("Your instructions were not applied")
    expect(note).to_be_in_viewport()
    expect(page.locator(".meta .instructions")).to_contain_text("compare the strains")
    expect(page.locator("#follow-up-open")).to_be_visible()   # continue with the AI model
    page.click("#follow-up-open")
    assert page.locator("#follow-up-form select[name=model] option, #follow-up-form input[name=model]").evaluate_all(
        "els => els.map(e => e.value)") == [AI], "only a model that follows instructions continues a job"
    page.goto(ux.base + f"/jobs/{offline_job['id']}/view/report.md")
    expect(page.locator("#instructions-note")).to_be_visible()
    expect(page.locator("article.rendered")).to_contain_text("Instructions given to this job were not applied")
    shot(page, f"offline-report-note-{'desktop' if viewport is DESKTOP else 'phone'}")
    assert errors == [], errors
    context.close()


# -- the table explorer -----------------------------------------------------------------------

@SIZES
def test_the_whole_table_is_sorted_on_the_server_and_a_view_is_a_url(ux, owner, big_job, browser, viewport):
    context = browser_context(browser, ux, owner, viewport=viewport, accept_downloads=True)
    page = context.new_page()
    errors = errors_of(page)
    page.goto(ux.base + big_job["urls"]["page"])
    page.click(f'.results-index a[href="#table-{TABLE}"]')   # folded among three tables: the index opens it
    page.click(f"#explore-{TABLE}")
    page.wait_for_url(f"**/tables/{TABLE}")
    expect(page.locator("#count")).to_contain_text(f"of {ROWS:,}")
    column = ["id", "cell", "time_s", "voltage_mv", "current_pa", "condition"].index("voltage_mv")
    header = page.locator("table.explore th", has_text="voltage_mv").locator("a.sort")
    header.click()   # smallest first
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("voltage_mv")
    page.locator("table.explore th", has_text="voltage_mv").locator("a.sort").click()   # then largest first
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("voltage_mv")
    assert float(explorer_rows(page)[0][column]) == TRUE_MAX, "the true maximum of all 1.2 M rows, not of a page"
    assert "sort=-voltage_mv" in page.url
    # A filter, by the form: the view's URL says it all.
    page.select_option("select[name=fcol]", "condition")
    page.select_option("select[name=fop]", "exact")
    page.fill("input[name=fval]", "drug_b")
    page.click(".filter-form button[type=submit]")
    page.wait_for_url(re.compile(r"condition__exact=drug_b"))
    page.select_option("select[name=fcol]", "voltage_mv")
    page.select_option("select[name=fop]", "lte")
    page.fill("input[name=fval]", "-89.9")
    page.click(".filter-form button[type=submit]")
    page.wait_for_url(re.compile(r"voltage_mv__lte="))
    expect(page.locator(".active-filters li")).to_have_count(2)
    rows = explorer_rows(page)
    assert rows and all(r[5] == "drug_b" and float(r[column]) <= -89.9 for r in rows)
    shot(page, f"explorer-{'desktop' if viewport is DESKTOP else 'phone'}")
    url = page.url
    second = browser_context(browser, ux, owner, viewport=viewport).new_page()   # another browser of the owner
    second.goto(url)
    assert explorer_rows(second) == rows and second.inner_text("#count") == page.inner_text("#count")
    second.context.close()
    # The current view as CSV: every matching row, in its order.
    with page.expect_download() as info:
        page.click("#csv")
    data = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    total = int(re.search(r"of ([\d,]+)", page.inner_text("#count")).group(1).replace(",", ""))
    assert data[0][5] == "condition" and len(data) - 1 == total and data[1] == rows[0]
    page.go_back()   # the back button goes to the view before
    page.wait_for_url(re.compile(r"condition__exact=drug_b$"))
    expect(page.locator(".active-filters li")).to_have_count(1)
    no_sideways_scroll(page)
    assert errors == [], errors
    context.close()


# -- history that survives the browser --------------------------------------------------------

@SIZES
def test_the_recovery_link_brings_the_history_to_a_new_browser(ux, browser, viewport):
    visitor = ux.client()
    job = visitor.submit([{"kind": "finish", "message": "done"}]).json()
    context = browser_context(browser, ux, visitor, viewport=viewport)
    page = context.new_page()
    page.goto(ux.base + "/")
    expect(page.locator("#history-note")).to_contain_text("only this browser lists them")
    page.click("#recovery-make")
    link = page.locator("#recovery-url")
    expect(link).to_have_value(re.compile(r"/recover/"))
    url = link.input_value()
    fresh = browser.new_context(viewport=viewport)   # a new browser: no cookie
    other = fresh.new_page()
    other.goto(ux.base + "/")
    expect(other.locator(f'a[href="{job["urls"]["page"]}"]')).to_have_count(0)
    other.goto(url)
    expect(other.locator("#recover")).to_contain_text("opens a history of 1 job")
    other.click("#recover-open")
    other.wait_for_url(ux.base + "/")
    expect(other.locator(f'table.history a[href="{job["urls"]["page"]}"]')).to_have_count(1)
    other.goto(ux.base + job["urls"]["page"])
    expect(other.locator("#rename")).to_be_visible()   # its owner now, not a reader
    page.reload()
    page.click("#recovery-revoke")
    expect(page.locator("#recovery-status")).to_contain_text("revoked")
    assert browser.new_context().new_page().goto(url).status == 404
    fresh.close()
    context.close()


def test_a_trusted_proxys_users_find_their_jobs_in_every_browser(start_server, browser):
    server = start_server(APP_TRUSTED_USER_HEADER="X-Forwarded-User", APP_TRUSTED_PROXIES="127.0.0.1")
    alice = server.client(**{"X-Forwarded-User": "alice"})
    job = alice.submit([{"kind": "finish", "message": "done"}]).json()
    for viewport in (DESKTOP, PHONE):   # two browsers of Alice, neither with a cookie of the other
        page = browser.new_context(viewport=viewport, extra_http_headers={"X-Forwarded-User": "alice"}).new_page()
        page.goto(server.base + "/")
        expect(page.locator(f'table.history a[href="{job["urls"]["page"]}"]')).to_have_count(1)
        expect(page.locator("#history")).to_contain_text("You are signed in")
        expect(page.locator("#history-note")).to_have_count(0)
        page.context.close()
    bob = browser.new_context(extra_http_headers={"X-Forwarded-User": "bob"}).new_page()
    bob.goto(server.base + "/")
    expect(bob.locator("table.history")).to_have_count(0)
    assert bob.goto(server.base + job["urls"]["page"]).status == 404
    bob.context.close()


# -- links that can be forwarded --------------------------------------------------------------

@SIZES
def test_a_forwarded_share_link_works_until_it_is_revoked(ux, owner, big_job, browser, viewport):
    context = browser_context(browser, ux, owner, viewport=viewport)
    page = context.new_page()
    page.goto(ux.base + f"/jobs/{big_job['id']}/tables/{TABLE}?sort=-voltage_mv&condition__exact=drug_a&limit=20")
    page.click("#share-view")
    view_link = page.locator("#view-link")
    expect(view_link).to_have_value(re.compile(r"/shared/[\w-]+/tables/"))
    url = view_link.input_value()
    rows = explorer_rows(page)
    colleague = browser.new_context(viewport=viewport)   # who it was sent to
    seen = colleague.new_page()
    seen.goto(url)
    assert seen.url == url and explorer_rows(seen) == rows
    expect(seen.locator(".banner")).to_contain_text("read-only")
    seen.click(".crumbs a")   # up to the job: still under the share address
    seen.wait_for_url(re.compile(r"/shared/[\w-]+#table-"))
    assert "/jobs/" not in seen.url
    seen.locator(".gallery a.plot-link").first.click()
    seen.wait_for_url(re.compile(r"/shared/[\w-]+/plots/"))
    forwarded = seen.url
    third = browser.new_context(viewport=viewport)   # the colleague forwards the plot's address
    plot = third.new_page()
    plot.goto(forwarded)
    expect(plot.locator("#plot-title")).to_be_visible()
    plot.wait_for_function("() => document.getElementById('plot').naturalWidth > 0")
    page.goto(ux.base + big_job["urls"]["page"])
    page.click("#share")
    expect(page.locator("#share-url")).to_have_value(re.compile(r"/shared/"))
    assert page.input_value("#share-url").split("/shared/")[1] == url.split("/shared/")[1].split("/")[0], \
        "the job's link is the one already given out"
    page.click("#share-revoke")
    expect(page.locator("#action-status")).to_contain_text("revoked")
    assert plot.reload().status == 404 and seen.goto(url).status == 404
    for c in (colleague, third, context):
        c.close()


# -- uploads checked before a sandbox starts ------------------------------------------------------

@SIZES
def test_a_png_is_refused_before_any_job_exists(ux, browser, viewport, tmp_path):
    visitor = ux.client()
    png = tmp_path / "gel photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    prose = tmp_path / "notes.txt"
    prose.write_text("The plate was read twice because the first read was too early.\n")
    context = browser_context(browser, ux, visitor, viewport=viewport)
    page = context.new_page()
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(ux.base + "/")
    page.set_input_files("#file-input", [str(png), str(prose), str(SAMPLE)])
    status = page.locator("#upload-status")
    expect(status).to_contain_text("gel photo.png (an image)")
    expect(status).to_contain_text("notes.txt (text, not a table")
    expect(status).to_contain_text("Upload tables: CSV")
    expect(page.locator("#submit")).to_be_disabled()
    expect(page.locator("#file-list li.refused")).to_have_count(2)
    assert posts == [] and visitor.get("/api/jobs").json()["jobs"] == []
    page.locator("#file-list li", has_text="gel photo.png").locator(".remove").click()
    page.locator("#file-list li", has_text="notes.txt").locator(".remove").click()
    expect(page.locator("#submit")).to_be_enabled()
    context.close()


# -- results that scan: ranked findings, folding tables, the plot viewer, skip to the log ---------

@SIZES
def test_results_scan_and_the_plot_viewer_works_by_keyboard(ux, owner, big_job, browser, viewport):
    context = browser_context(browser, ux, owner, viewport=viewport, accept_downloads=True)
    page = context.new_page()
    errors = errors_of(page)
    page.goto(ux.base + big_job["urls"]["page"])
    first = page.locator("#ranked-findings li").first
    expect(first).to_contain_text("instrument: saturated")   # reader's, though assay comes first by name
    expect(first.locator("a")).to_have_text("reader")
    expect(page.locator(".results-index")).to_contain_text("recordings")
    expect(page.locator("#table-assay h3 button.toggle")).to_have_attribute("aria-expanded", "true")
    toggle = page.locator("#table-reader h3 button.toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")   # three tables: all but the first folded
    expect(toggle).to_have_accessible_name("Table reader")
    page.click('.results-index a[href="#table-reader"]')
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#table-reader-body")).to_be_visible()
    toggle.click()
    expect(page.locator("#table-reader-body")).to_be_hidden()
    # Skip to the log: the second stop of the keyboard on the page.
    page.goto(ux.base + big_job["urls"]["page"])
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to the log"
    page.keyboard.press("Enter")
    assert page.url.endswith("#log-title")
    # The plot viewer: full size, next and previous by keyboard, PNG and SVG.
    page.goto(ux.base + big_job["urls"]["page"])
    page.click('#open-plots')
    page.wait_for_url(re.compile(r"/plots/assay/plots/assay_0\.png$"))
    expect(page.locator("#plot-title")).to_have_text("assay plot 0")
    page.wait_for_function("() => document.getElementById('plot').naturalWidth > 0")
    shot(page, f"plot-viewer-{'desktop' if viewport is DESKTOP else 'phone'}")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r"assay_1\.png$"))
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r"reader_0\.png$"))
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(re.compile(r"assay_1\.png$"))
    page.keyboard.press("f")
    expect(page.locator("#full-size")).to_have_attribute("aria-pressed", "true")
    natural = page.evaluate("() => document.getElementById('plot').naturalWidth")
    assert page.evaluate("() => document.getElementById('plot').getBoundingClientRect().width") == natural
    for button, suffix in (("#download-png", ".png"), ("#download-svg", ".svg")):
        with page.expect_download() as info:
            page.click(button)
        assert info.value.suggested_filename == "assay_1" + suffix
    assert Path(info.value.path()).read_text().lstrip().startswith(("<?xml", "<svg"))
    page.keyboard.press("Escape")
    page.wait_for_url(re.compile(r"/jobs/[\w-]+#plots$"))
    assert errors == [], errors
    context.close()


# -- statuses after a cancel or a failure -------------------------------------------------------

@SIZES
def test_statuses_after_a_cancel_and_a_job_without_a_table(ux, browser, viewport):
    visitor = ux.client()
    job = visitor.submit([{"kind": "shell", "command": "cat /workspace/data.csv; echo waiting; sleep 300"}]).json()
    context = browser_context(browser, ux, visitor, viewport=viewport)
    page = context.new_page()
    page.goto(ux.base + job["urls"]["page"])
    chip = page.locator('#file-progress li[data-file="data.csv"]')
    expect(chip).to_contain_text("analysing", timeout=60_000)
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("cancelled", timeout=60_000)
    expect(chip).to_contain_text("stopped")
    expect(page.locator("#phases li.current")).to_have_text("Cancelled")
    page.reload()   # the server says the same
    expect(chip).to_contain_text("stopped")
    expect(page.locator("#phases li.current")).to_have_text("Cancelled")
    # A job whose uploads hold no table failed: no "partial results", no Continue.
    empty = visitor.post("/api/jobs", data={"model": "offline"},
                         files=[("files", ("empty.csv", b"sample,od\n"))]).json()
    assert wait_finished(visitor, empty["id"])["status"] == "failed"
    page.goto(ux.base + empty["urls"]["page"])
    expect(page.locator("#no-table")).to_contain_text("No table could be read")
    expect(page.locator(".badge.partial")).to_have_count(0)
    expect(page.locator("#follow-up-open")).to_have_count(0)
    expect(page.locator("#phases li.current")).to_have_text("Failed")
    context.close()


# -- accessibility ------------------------------------------------------------------------------

@SIZES
def test_axe_finds_nothing_serious_on_the_start_job_shared_report_explorer_and_plot_pages(
        ux, owner, big_job, offline_job, browser, viewport):
    context = browser_context(browser, ux, owner, viewport=viewport, bypass_csp=True)
    page = context.new_page()
    token = owner.post(f"/api/jobs/{offline_job['id']}/share", json={"reuse": True}).json()["token"]
    pages = ["/", big_job["urls"]["page"], offline_job["urls"]["page"], f"/jobs/{offline_job['id']}/view/report.md",
             f"/jobs/{big_job['id']}/tables/{TABLE}?sort=-voltage_mv&current_pa__isnull=1",
             f"/jobs/{big_job['id']}/plots/reader/plots/reader_1.png"]
    found = {}
    for path in pages:
        page.goto(ux.base + path)
        page.wait_for_load_state("networkidle")
        found[path] = axe_violations(page)
        no_sideways_scroll(page)
    reader = browser.new_context(viewport=viewport, bypass_csp=True).new_page()   # the shared page
    reader.goto(ux.base + f"/shared/{token}")
    reader.wait_for_load_state("networkidle")
    found["/shared/<token>"] = axe_violations(reader)
    reader.goto(ux.base + f"/api/jobs/{offline_job['id']}/outputs/report.html")   # fits a phone
    assert reader.evaluate("() => document.documentElement.scrollWidth") <= max(viewport["width"], 360)
    assert {p: v for p, v in found.items() if v} == {}
    reader.context.close()
    context.close()


def test_the_explorer_works_without_javascript(ux, owner, big_job, browser):
    context = browser_context(browser, ux, owner, viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(ux.base + f"/jobs/{big_job['id']}/tables/{TABLE}")
    page.select_option("select[name=fcol]", "current_pa")
    page.select_option("select[name=fop]", "isnull")
    page.click(".filter-form button[type=submit]")   # a GET the server turns into the view's URL
    page.wait_for_url(re.compile(r"current_pa__isnull=1$"))
    assert {r[4] for r in explorer_rows(page)} == {"missing"}
    expect(page.locator("#count")).to_contain_text(f"of {len(range(0, ROWS, 7)):,}")
    page.click("summary")   # choose columns
    page.uncheck("input[name=col][value=cell]")
    page.click(".columns-chooser button[type=submit]")
    page.wait_for_url(re.compile(r"columns=id,time_s,voltage_mv,current_pa,condition"))
    page.click("#next")
    page.wait_for_url(re.compile(r"offset=50"))
    expect(page.locator("#count")).to_contain_text("Rows 51–100")
    context.close()
