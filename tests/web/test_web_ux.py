"""The web app as scientists use it, in real Chromium at desktop (1366x900) and phone (390x844,
360 wide) sizes: keyboard-only upload, upload progress and limits, the run's phases, results
grouped by table, images that load (job page, report.html, report.md), large results, no
sideways scrolling, rename/delete/rerun/share, axe-core checks, the page without JavaScript.

Screenshots go to $WEB_SCREENSHOTS (default test-artifacts/screenshots).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from web_helpers import REPO, browser_context, wait_finished

from agent_sandbox.agent.playbook import SCRIPT_NAMES

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
NARROW = {"width": 360, "height": 740}
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHOTS = Path(os.environ.get("WEB_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
SAMPLE = REPO / "samples" / "plate_reader.csv"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from web_helpers import Server
    s = Server(tmp_path_factory.mktemp("ux"), {"APP_MODELS": "offline,scripted"}).start()
    yield s
    s.stop()


def shell(command: str, thought: str = "") -> dict:
    return {"kind": "shell", "command": command, "thought": thought}


def run_job(client, actions=None, files=None, model="scripted", wait=True) -> dict:
    resp = client.submit(actions, files, model=model) if model == "scripted" else client.post(
        "/api/jobs", data={"model": model},
        files=[("files", (n, b)) for n, b in (files or {"plate_reader.csv": SAMPLE.read_bytes()}).items()])
    assert resp.status_code == 201, resp.text
    job = resp.json()
    return wait_finished(client, job["id"]) if wait else job


def no_sideways_scroll(page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    assert width <= viewport, f"{page.url} is {width}px wide on a {viewport}px screen"


def images_loaded(page) -> list[str]:
    """Every <img> on the page, scrolled to (they load lazily): the ones that did not load."""
    for img in page.locator("img").all():
        img.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    return page.evaluate("() => [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def collect_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


# -- 2. keyboard --------------------------------------------------------------------------

@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_keyboard_only_upload_and_submit(app, browser, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors = collect_errors(page)
    choosers = []  # listening from the start: a late listener can miss the dialog
    page.on("filechooser", lambda chooser: choosers.append(chooser))

    def press_for_chooser(key: str):
        count = len(choosers)
        page.keyboard.press(key)
        for _ in range(100):
            if len(choosers) > count:
                return choosers[-1]
            page.wait_for_timeout(100)
        raise AssertionError(f"{key} did not open the file chooser")

    page.goto(app.base + "/")
    for _ in range(10):  # Tab until the file chooser has the focus
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "dropzone":
            break
    assert page.evaluate("() => document.activeElement.id") == "dropzone", "the drop zone is reachable with Tab"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "focus is visible"
    press_for_chooser("Enter").set_files(str(SAMPLE))
    expect(page.locator("#file-list li")).to_have_count(1)
    press_for_chooser("Space").set_files([])  # Space works too
    for _ in range(10):
        if page.evaluate("() => document.activeElement.id") == "submit":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "submit"
    page.keyboard.press("Enter")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    # A file dropped beside the zone does not make the browser leave the app.
    prevented = page.goto(app.base + "/") and page.evaluate("""() => {
        const dt = new DataTransfer(); dt.items.add(new File(['x'], 'stray.csv'));
        const e = new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true});
        document.querySelector('h2').dispatchEvent(e); return e.defaultPrevented; }""")
    assert prevented, "a drop outside the zone is cancelled"
    assert page.url.rstrip("/") == app.base and errors == [], errors
    context.close()


# -- 3. upload progress and limits -------------------------------------------------------

def test_upload_progress_with_speed_time_left_and_cancel(app, browser, tmp_path):
    big = tmp_path / "scan.csv"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")  # a slow uplink, so the upload takes seconds
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                   "uploadThroughput": 3 * 1024 * 1024})
    page.goto(app.base + "/")
    page.set_input_files("#file-input", str(big))
    expect(page.locator("#file-list li")).to_have_count(1)
    expect(page.locator("#upload-status")).to_have_text("")
    expect(page.locator("#submit")).to_be_enabled()
    page.click("#submit")
    expect(page.locator("#progress")).to_be_visible()
    progress = re.compile(r"[\d.]+ (KB|MB) of 12\.0 MB · ([1-9]\d?)% · [\d.]+ (KB|MB)/s · \d+ s left")
    expect(page.locator("#progress-text")).to_have_text(progress, timeout=10_000)
    assert 0 < page.eval_on_selector("#progress-bar", "b => b.value") < 100
    shot(page, "desktop-uploading")
    jobs_before = len(requests.get(app.base + "/api/jobs", cookies=context_cookies(context)).json()["jobs"])
    page.click("#upload-cancel")
    expect(page.locator("#upload-status")).to_contain_text("Upload cancelled")
    expect(page.locator("#progress")).to_be_hidden()
    assert len(requests.get(app.base + "/api/jobs", cookies=context_cookies(context)).json()["jobs"]) == jobs_before
    expect(page.locator("#submit")).to_be_enabled()  # the files stay chosen: send them again
    context.close()


def context_cookies(context) -> dict:
    return {c["name"]: c["value"] for c in context.cookies()}


def test_limits_are_checked_before_the_upload_starts(start_server, browser, tmp_path):
    server = start_server(APP_MAX_FILE_MB="1", APP_MAX_REQUEST_MB="2", APP_MAX_FILES="2")
    page = browser.new_page(viewport=PHONE)
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    page.goto(server.base + "/")
    big = tmp_path / "big.csv"
    big.write_bytes(b"a\n" * 700_000)  # 1.3 MB
    page.set_input_files("#file-input", str(big))
    expect(page.locator("#upload-status")).to_have_text(re.compile(r"big\.csv is 1\.3 MB, over the limit of 1\.0 MB per file"))
    expect(page.locator("#submit")).to_be_disabled()
    page.click("#file-list .remove")
    small = [tmp_path / f"s{i}.csv" for i in range(3)]
    for f in small:
        f.write_text("a\n1\n")
    page.set_input_files("#file-input", [str(f) for f in small])
    expect(page.locator("#upload-status")).to_have_text("At most 2 files per job; remove 1.")
    expect(page.locator("#submit")).to_be_disabled()
    assert sent == [], "nothing was sent"
    page.context.close()


# -- 4. phases, steps, the readable log ---------------------------------------------------

def test_phases_are_shown_in_order_with_steps_and_a_readable_log(app, browser):
    client = app.client()
    script = [{"kind": "write_file", "path": "scripts/a.py", "content": "print(1)\n", "thought": "Write a"},
              {"kind": "write_file", "path": "scripts/b.py", "content": "print(2)\n", "thought": "Write b"},
              shell("sleep 1.5; cat /workspace/data.csv; for i in $(seq 1 30); do echo line $i; done; "
                    "echo 'RESULT {\"file\": \"data.csv\", \"name\": \"data\", \"status\": \"ok\", \"tables\": [\"data\"], \"seconds\": 0.5}'",
                    "Analyse data.csv"),
              shell("sleep 1", "Write the report")]
    job = run_job(client, script, wait=False)
    context = browser_context(browser, app, client, viewport=PHONE)
    page = context.new_page()
    errors = collect_errors(page)
    page.add_init_script("""window.__phases = [];
        new MutationObserver(() => { const li = document.querySelector('#phases li.current');
          const p = li && li.dataset.phase; if (p && window.__phases.at(-1) !== p) window.__phases.push(p); })
        .observe(document, {subtree: true, attributes: true, attributeFilter: ['class']});""")
    page.goto(app.base + job["urls"]["page"])
    expect(page.locator("#step-info")).to_have_text("Step 3 · file 1 of 1: data.csv", timeout=30_000)
    expect(page.locator('#file-progress li[data-file="data.csv"]')).to_contain_text("analysing")
    shot(page, "phone-running")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    phases = page.evaluate("() => window.__phases")
    order = ["queued", "starting", "running", "collecting", "done"]
    assert [p for p in order if p in phases] == phases, f"phases out of order: {phases}"
    assert {"running", "collecting", "done"} <= set(phases), phases
    expect(page.locator("#phases li.past")).to_have_count(4)
    expect(page.locator("#step-info")).to_have_text("4 steps")
    assert re.fullmatch(r"\d+ s|\d+ min \d\d s", page.inner_text("#elapsed"))
    expect(page.locator('#file-progress li[data-file="data.csv"]')).to_contain_text("done")
    # Routine steps are one folded line; the long output is folded; RESULT is a sentence.
    routine = page.locator("#log details.routine")
    expect(routine).to_have_count(1)
    expect(routine.locator("summary")).to_have_text("Steps 1–2 · wrote 2 files: scripts/a.py, scripts/b.py")
    assert routine.evaluate("d => !d.open")
    expect(page.locator("#log details.out-fold summary")).to_have_text("Output: 34 lines")  # 3 of data.csv, 30, RESULT
    expect(page.locator("#log .line.result")).to_have_text("✓ data.csv → data in 0.5 s")
    assert not any("RESULT {" in t for t in page.locator("#log .cmd-out").all_text_contents())
    page.click("#collapse-all")
    assert page.locator("#log details.step[open]").count() == 0
    page.click("#expand-all")
    assert page.locator("#log details.step:not([open])").count() == 0
    # The end brings the results into view.
    expect(page.locator("#results-title")).to_be_in_viewport()
    assert errors == [], errors
    context.close()


# -- 5, 6, 9. results by table; images load everywhere; the sample button ---------------------

def test_sample_job_results_by_table_and_every_image_loads(app, browser):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(app.base + "/")
    assert page.locator("link[rel=icon]").get_attribute("href").endswith("favicon.svg")
    assert requests.get(app.base + page.locator("link[rel=icon]").get_attribute("href")).status_code == 200
    expect(page.locator(".lead")).to_contain_text("isolated sandbox on this server")
    page.click("#sample")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#table-plate_reader")).to_be_visible()
    summary = page.locator(".summary")
    expect(summary).to_contain_text("plate_reader.csv read into plate_reader")
    # my_files (README.md, units.csv) are reference material, not inputs; the sample's repeat row is a finding
    expect(summary).not_to_contain_text("README.md")
    expect(summary).to_contain_text("row(s) identical to an earlier row")
    group = page.locator("#table-plate_reader")
    # In order: findings, plots, one preview, downloads.
    headings = group.locator("h4").all_inner_texts()
    assert [h.split()[0] for h in headings] == ["Findings", "Plots", "Preview", "Downloads"], headings
    job_id = page.url.split("/jobs/")[1].split("/")[0].split("?")[0]
    profile = page.request.get(f"{app.base}/api/jobs/{job_id}/outputs/plate_reader/plate_reader.profile.json").json()
    n_plots = len(profile["plots"])
    assert n_plots >= 2
    assert group.locator("table.preview").count() == 1, "CSV and Parquet of a table: one preview"
    expect(group.locator("table.preview th").first).to_contain_text("text")  # column types
    # A header sorts the whole table on the server (the explorer), largest first for numbers.
    group.locator("th", has_text="absorbance").locator("a.sort").click()
    page.wait_for_url(re.compile(r"/tables/plate_reader\?sort=-absorbance"))
    column = page.locator("table.explore thead th").all_inner_texts().index(
        next(t for t in page.locator("table.explore thead th").all_inner_texts() if t.startswith("absorbance")))
    values = [float(v) for v in page.locator(f"table.explore tbody tr td:nth-child({column + 1})").all_inner_texts()
              if v and v != "missing"]
    assert values == sorted(values, reverse=True) and len(values) > 20
    assert page.get_attribute("th[aria-sort=descending]", "scope") == "col"
    page.go_back()
    expect(page.locator("details.folded summary")).to_contain_text("Scripts to reproduce")
    assert not page.locator("details.folded").evaluate("d => d.open")
    assert images_loaded(page) == []
    assert page.locator("#table-plate_reader img").count() == n_plots
    shot(page, "desktop-finished")

    page.click("#report-html")  # served sandboxed, yet its plots show: they are embedded
    page.wait_for_load_state()
    assert page.locator("img").count() == n_plots and images_loaded(page) == []
    assert page.locator('meta[name=viewport]').count() == 1
    page.go_back()
    page.click(".report-links a >> nth=0")
    expect(page.locator("article.rendered h1")).to_have_text("Data report")
    assert images_loaded(page) == [] and page.locator("article img").count() == n_plots
    raw = page.locator("a", has_text="raw file").get_attribute("href")
    assert requests.get(app.base + raw, cookies=context_cookies(context)).text.startswith("# Data report")
    assert errors == [], errors
    context.close()


def assay_outputs(profile: dict) -> str:
    """Python for the sandbox: one table `assay` as the playbook lays it out, plus working files."""
    return ("import os, pandas as pd, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
            "os.makedirs('/outputs/assay/plots'); os.makedirs('/outputs/.scratch')\n"
            "df = pd.DataFrame({'well': ['A1', 'A2', 'A3'], 'od': [0.2, 0.99, 0.1]})\n"
            "df.to_csv('/outputs/assay/assay.csv', index=False); df.to_parquet('/outputs/assay/assay.parquet')\n"
            "plt.hist(df.od); plt.savefig('/outputs/assay/plots/od.png')\n"
            f"open('/outputs/assay/assay.profile.json', 'w').write({json.dumps(json.dumps(profile))})\n"
            "open('/outputs/.scratch/spill.tmp', 'w').write('x'); open('/outputs/assay/db.wal', 'w').write('x')\n")


def test_findings_plots_units_partial_and_no_internal_files(app, browser):
    """Profiles with the playbook's findings, plots and units are rendered; working files never appear."""
    client = app.client()
    profile = {"table": "assay", "source": "assay.xlsx", "rows_before": 4, "rows_after": 3,
               "columns_before": 2, "columns_after": 2,
               "columns": [{"name": "well", "type": "text"}, {"name": "od", "type": "number", "unit": "AU"}],
               "findings": [{"kind": "outlier", "column": "od", "rows": 1, "detail": "0.99 is far above the rest"}],
               "plots": [{"kind": "hist", "columns": ["od"], "path": "assay/plots/od.png"}]}
    job = run_job(client, [{"kind": "python", "code": assay_outputs(profile)},
                           {"kind": "finish", "status": "failed", "message": "gave up"}])
    assert job["status"] == "failed"
    context = browser_context(browser, app, client, viewport=DESKTOP)
    page = context.new_page()
    page.goto(app.base + job["urls"]["page"])
    results = page.locator("#results")
    expect(results.locator("h2 .badge.partial")).to_have_text("partial")
    expect(results.locator(".partial-note")).to_contain_text("the run failed")
    expect(results.locator(".summary .findings")).to_contain_text("data: outlier assay.od: 0.99 is far above the rest (1 row)")
    group = page.locator("#table-assay")
    expect(group.locator("h3")).to_contain_text("from assay.xlsx")
    expect(group.locator(".findings li")).to_have_count(1)
    expect(group.locator("figcaption")).to_have_text("hist of od")
    expect(group.locator("th", has_text="od")).to_contain_text("number · AU")
    assert group.locator("table.preview").count() == 1
    text = page.inner_text("#results")
    assert ".scratch" not in text and "db.wal" not in text and "spill.tmp" not in text
    assert images_loaded(page) == []

    # Today's profiles (no findings; plots as {path, kind, column, title}) render too.
    del profile["findings"]
    profile["plots"] = [{"path": "assay/plots/od.png", "kind": "hist", "column": "od", "title": "Distribution of od"}]
    job = run_job(client, [{"kind": "python", "code": assay_outputs(profile)}])
    assert job["status"] == "succeeded"
    page.goto(app.base + job["urls"]["page"])
    expect(page.locator("#table-assay figcaption")).to_have_text("Distribution of od")
    assert page.locator("#table-assay .findings").count() == 0 and page.locator(".badge.partial").count() == 0
    context.close()


# -- 1. large results -----------------------------------------------------------------------

def test_a_large_result_comes_back_and_downloads(start_server, browser):
    server = start_server(AGENT_SANDBOX_MAX_TOTAL_BYTES=str(20 * 1024 * 1024))
    client = server.client()
    job = run_job(client, [shell("head -c 12000000 /dev/urandom > /outputs/cells.parquet; "
                                 "head -c 14000000 /dev/zero > /outputs/cells.csv; echo ok > /outputs/notes.txt")])
    assert job["status"] == "succeeded"
    manifest = client.get(f"/api/jobs/{job['id']}/outputs").json()
    files = {f["path"]: f for f in manifest["files"]}
    assert files["cells.parquet"]["large"] is True
    context = browser_context(browser, server, client, viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    page.goto(server.base + job["urls"]["page"])
    row = page.locator(".downloads li", has_text="cells.parquet")
    expect(row.locator(".badge.large")).to_have_text("large")
    with page.expect_download() as info:
        row.locator("a.dl").click()
    data = Path(info.value.path()).read_bytes()
    assert len(data) == 12_000_000 and hashlib.sha256(data).hexdigest() == files["cells.parquet"]["sha256"]
    skipped = page.locator(".skipped-list li", has_text="cells.csv")
    expect(skipped).to_contain_text("13 MB, past the per-job total limit of 20 MB")
    expect(skipped).to_contain_text("rerun them on your files locally")
    no_sideways_scroll(page)
    context.close()


# -- 7. phone layout -------------------------------------------------------------------------

def test_nothing_scrolls_sideways_at_360_px(app, browser):
    client = app.client()
    long_name = "a_very_long_experiment_file_name_without_any_spaces_from_the_plate_reader_2026.csv"
    job = run_job(client, model="offline", files={long_name: SAMPLE.read_bytes()})
    assert job["status"] == "succeeded"
    context = browser_context(browser, app, client, viewport=NARROW)
    page = context.new_page()
    for path in ["/", job["urls"]["page"], f"/jobs/{job['id']}/view/report.md"]:
        page.goto(app.base + path)
        no_sideways_scroll(page)
    page.goto(app.base + job["urls"]["page"])
    page.click("#share")
    expect(page.locator("#share-url")).to_be_visible()
    no_sideways_scroll(page)
    context.close()


# -- 8. history: names, rename, delete, rerun, share -------------------------------------------

def test_rename_share_rerun_delete(app, browser):
    owner = app.client()
    job = run_job(owner, model="offline")
    steps = [e["data"] for e in owner.events(job["id"]) if e.get("event") == "step"]
    assert [(d["step"], d["data"]["of"]) for d in steps] == [(n, len(steps)) for n in range(1, len(steps) + 1)], \
        "the playbook says how many steps it plans: step 3 of 12"
    context = browser_context(browser, app, owner, viewport=DESKTOP)
    page = context.new_page()
    page.goto(app.base + "/")
    row = page.locator("table.history tr", has=page.locator(f'a[href="{job["urls"]["page"]}"]'))
    expect(row.locator(".job-name")).to_have_text("plate_reader.csv")
    expect(row.locator(".summary")).to_contain_text("Analysed 1 of 1 uploaded file(s)")
    expect(row).to_contain_text("succeeded")
    row.locator(".job-name").click()

    page.click("#rename")
    page.fill("#rename-input", "Plate 7, March run")
    page.keyboard.press("Enter")
    expect(page.locator("#job-name")).to_have_text("Plate 7, March run")
    page.goto(app.base + "/")
    expect(page.locator("table.history")).to_contain_text("Plate 7, March run")

    page.goto(app.base + job["urls"]["page"])
    page.click("#share")
    expect(page.locator("#share-url")).to_have_value(re.compile(r"/shared/"))
    url = page.input_value("#share-url")
    assert url.startswith(app.base + "/shared/")
    colleague = browser.new_context(viewport=PHONE)  # another browser: no cookie of the owner
    other = colleague.new_page()
    assert other.goto(app.base + job["urls"]["page"]).status == 404
    other.goto(url)
    expect(other.locator("#job-name")).to_have_text("Plate 7, March run")
    expect(other.locator(".banner")).to_contain_text("read-only")
    assert other.locator("#actions").count() == 0
    expect(other.locator("#table-plate_reader")).to_be_visible()
    assert images_loaded(other) == []
    token = context_cookies(colleague)
    csrf = requests.get(app.base + "/api/session", cookies=token).json()["csrf_token"]
    assert requests.post(f"{app.base}/api/jobs/{job['id']}/cancel", cookies=token,
                         headers={"X-CSRF-Token": csrf}).status_code == 404, "a share link changes nothing"
    page.click("#share-revoke")
    expect(page.locator("#action-status")).to_contain_text("revoked")
    assert other.reload().status == 404
    assert other.goto(url).status == 404

    page.click("#rerun")
    page.wait_for_url(re.compile(r".*/jobs/(?!" + re.escape(job["id"]) + ").*"))
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(".meta")).to_contain_text("plate_reader.csv")
    expect(page.locator("#table-plate_reader")).to_be_visible()

    page.goto(app.base + job["urls"]["page"])
    page.once("dialog", lambda d: d.accept())
    page.click("#delete")
    page.wait_for_url(app.base + "/")
    expect(page.locator(f'table.history a[href="{job["urls"]["page"]}"]')).to_have_count(0)
    assert owner.get(f"/api/jobs/{job['id']}").status_code == 404
    assert not (app.root / "outputs" / "results" / job["id"]).exists()
    assert not (app.root / "outputs" / "uploaded_files" / job["id"]).exists()
    colleague.close()
    context.close()


# -- 10. accessibility -----------------------------------------------------------------------

def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in found if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_axe_finds_nothing_serious_on_start_job_and_history_pages(app, browser, viewport):
    client = app.client()
    # The test-only copy of axe-core is injected into our pages, whose CSP would refuse it.
    context = browser_context(browser, app, client, viewport=viewport, bypass_csp=True)
    page = context.new_page()
    page.goto(app.base + "/")  # the start page, no history yet
    assert axe_violations(page) == []
    job = run_job(client, model="offline")
    page.goto(app.base + job["urls"]["page"])
    expect(page.locator("#table-plate_reader")).to_be_visible()
    assert axe_violations(page) == []
    assert page.get_attribute("#log", "tabindex") == "0" and page.get_attribute("#log", "aria-live") is None
    assert page.get_attribute("#announce", "aria-live") == "polite"
    page.goto(app.base + "/")  # the history
    expect(page.locator("table.history tbody tr")).to_have_count(1)
    assert axe_violations(page) == []
    context.close()


# -- 11. without JavaScript ---------------------------------------------------------------------

def test_without_javascript_the_job_page_shows_the_log_and_readable_times(app, browser):
    client = app.client()
    job = run_job(client, model="offline")
    context = browser_context(browser, app, client, viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(app.base + job["urls"]["page"])
    log = page.locator("#log")
    expect(log.locator("details.routine summary")).to_contain_text(f"wrote {len(SCRIPT_NAMES)} files")
    expect(log).to_contain_text("✓ plate_reader.csv → plate_reader")
    expect(log).to_contain_text("$ python /outputs/scripts/analyze_table.py /workspace/plate_reader.csv")
    expect(log).to_contain_text("run finished: succeeded")
    expect(page.locator(".meta time")).to_have_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    expect(page.locator("#elapsed")).to_have_text(re.compile(r"^\d+ s$|^\d+ min \d\d s$"))
    expect(page.locator("#phases li.current")).to_have_text("Done")
    expect(page.locator("#table-plate_reader")).to_be_visible()
    page.goto(app.base + "/")
    expect(page.locator("table.history time").first).to_have_text(re.compile(r"UTC$"))
    context.close()


# -- screenshots at both sizes ----------------------------------------------------------------

@pytest.mark.parametrize("name,viewport", [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots_start_running_finished(app, browser, name, viewport):
    client = app.client()
    finished = run_job(client, model="offline")
    running = run_job(client, [shell("cat /workspace/data.csv", "Look at the data"),
                               shell("for i in $(seq 1 40); do echo reading row $i; sleep 0.25; done", "Read every row")],
                      wait=False)
    context = browser_context(browser, app, client, viewport=viewport)
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(app.base + "/")
    no_sideways_scroll(page)
    shot(page, f"{name}-start")
    page.goto(app.base + running["urls"]["page"])
    expect(page.locator("#log")).to_contain_text("reading row 3", timeout=30_000)
    expect(page.locator("#phases li.current")).to_have_text("Running")
    no_sideways_scroll(page)
    shot(page, f"{name}-running")
    client.post(f"/api/jobs/{running['id']}/cancel")
    page.goto(app.base + finished["urls"]["page"])
    assert images_loaded(page) == []
    no_sideways_scroll(page)
    shot(page, f"{name}-finished")
    assert errors == [], errors
    context.close()
