"""A real browser (Debian's Chromium, driven by Playwright) against a real server and sandbox.

Upload a real dataset on /, watch the log arrive live on /jobs/<id>, see the
plot inline, the rendered report and a table preview, download the zip, and
keep a screenshot in test-artifacts/.
"""

from __future__ import annotations

import importlib.util
import io
import json
import time
import zipfile
from pathlib import Path

import palmerpenguins
from playwright.sync_api import expect
from web_helpers import REPO, sandbox_processes

PENGUINS = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
ARTIFACTS = REPO / "test-artifacts"
HAVE_PLAYBOOK = importlib.util.find_spec("agent_sandbox.agent.models.offline") is not None

ANALYSIS = """
import os, pandas as pd, matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
df = pd.read_csv('/workspace/penguins.csv').dropna()
os.makedirs('/outputs/plots', exist_ok=True)
df.to_csv('/outputs/penguins_clean.csv', index=False)
ax = df.groupby('species')['body_mass_g'].mean().plot.bar(title='Mean body mass')
plt.tight_layout(); plt.savefig('/outputs/plots/body_mass.png')
"""
# Used when the offline playbook is not on this branch: the same kinds of outputs, scripted.
SCRIPT = [
    {"kind": "shell", "thought": "Look at the upload",
     "command": "head -3 /workspace/penguins.csv; for i in 1 2 3 4 5; do echo reading $i; sleep 0.4; done"},
    {"kind": "python", "thought": "Clean and plot", "code": ANALYSIS},
    {"kind": "write_file", "path": "report.md",
     "content": "# Penguin report\n\nBody mass differs by species.\n\n![Body mass](plots/body_mass.png)\n"},
    {"kind": "finish", "message": "Report written"},
]


def test_upload_watch_live_and_get_results(start_server, browser):
    model = "offline" if HAVE_PLAYBOOK else "scripted"
    server = start_server(APP_MODELS=f"{model},scripted" if model == "offline" else "scripted,offline")
    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.base + "/")
    expect(page.locator("h1")).to_have_text("New job")

    page.set_input_files("#file-input", str(PENGUINS))
    # and a second file by drag and drop
    drop = page.evaluate_handle("""() => { const dt = new DataTransfer();
        dt.items.add(new File(['station,temp\\nB,4.5\\n'], 'stations.csv', {type: 'text/csv'})); return dt; }""")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": drop})
    expect(page.locator("#file-list li")).to_have_count(2)
    page.select_option("select[name=model]", model)
    # Neither model reads written instructions: the form offers the offline analysis's options instead.
    expect(page.locator("#instructions")).to_be_hidden()
    page.check("input[name=option][value=drop_duplicates]")
    if model == "scripted":  # the scripted model reads its actions from this form field
        page.evaluate("""(s) => { const i = document.createElement('input'); i.type = 'hidden';
            i.name = 'script'; i.value = s; document.getElementById('upload-form').appendChild(i); }""",
                      json.dumps(SCRIPT))
    page.click("#submit")
    page.wait_for_url("**/jobs/*")

    # Log lines arrive while the job is still running.
    expect(page.locator("#log details.step").first).to_be_attached(timeout=30_000)
    live_badge = page.locator("#status").inner_text()
    expect(page.locator("#log")).to_contain_text("penguins.csv", timeout=30_000)
    assert live_badge not in ("succeeded", "failed", "error"), "the log was seen before the end"

    expect(page.locator("#status")).to_have_text("succeeded", timeout=120_000)
    if model == "offline":  # grouped by profiled table; the report is a link
        expect(page.locator("#table-penguins h3")).to_contain_text("penguins", timeout=10_000)
    else:  # no profiles: the agent's report is shown inline
        expect(page.locator("#report h1")).to_be_visible(timeout=10_000)
    img = page.locator(".gallery img").first
    expect(img).to_be_visible()
    page.wait_for_function("() => [...document.querySelectorAll('.gallery img')].every(i => i.naturalWidth > 0)")
    expect(page.locator("table.preview").first).to_contain_text("species")
    expect(page.locator("#cancel")).to_be_hidden()
    assert page.locator("#elapsed").inner_text().endswith("s")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-job.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#zip")
    data = Path(info.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert any(n.endswith("report.md") for n in names)
    assert any(n.endswith(".png") for n in names) and any(n.endswith("manifest.json") for n in names)

    page.goto(server.base + "/")
    expect(page.locator("table.history tbody tr")).to_have_count(1)
    expect(page.locator("table.history")).to_contain_text("succeeded")
    assert errors == [], errors


def test_cancel_button_stops_the_job(start_server, browser):
    server = start_server()
    client = server.client()
    job = client.submit([{"kind": "shell", "command": "echo waiting; sleep 300"}]).json()
    context = browser.new_context()
    context.add_cookies([{"name": k, "value": v, "url": server.base} for k, v in client.http.cookies.items()])
    page = context.new_page()
    page.goto(server.base + job["urls"]["page"])
    expect(page.locator("#log")).to_contain_text("waiting", timeout=30_000)
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("cancelled", timeout=30_000)
    expect(page.locator("#cancel")).to_be_hidden()
    assert sandbox_processes(job["id"]) == [] or _gone_soon(job["id"])
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"


def _gone_soon(job_id: str) -> bool:
    deadline = time.time() + 10
    while sandbox_processes(job_id) and time.time() < deadline:
        time.sleep(0.2)
    return sandbox_processes(job_id) == []


def test_log_follows_output_but_not_while_the_user_reads_above(start_server, browser):
    server = start_server()
    client = server.client()
    # Short commands make the log far taller than its box; then one long, slow output.
    script = [{"kind": "shell", "command": f"echo line {i}"} for i in range(1, 26)]
    script.append({"kind": "shell", "command": "for i in $(seq 1 80); do echo tick $i; sleep 0.05; done"})
    job = client.submit(script).json()
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    context.add_cookies([{"name": k, "value": v, "url": server.base} for k, v in client.http.cookies.items()])
    page = context.new_page()
    page.goto(server.base + job["urls"]["page"])
    log = page.locator("#log")
    expect(log).to_contain_text("tick 5", timeout=30_000)
    gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    assert log.evaluate(gap) < 40, "the log follows new output at the bottom"

    # Only output events arrive from here on: they must not pull the reader down.
    log.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    expect(log).to_contain_text("tick 40", timeout=30_000)
    assert log.evaluate("el => el.scrollTop") == 0, "new output does not pull the reader down"
    assert "tick 80" not in log.inner_text(), "still running: only output events came meanwhile"
    assert page.locator("#jump").is_visible(), "the reader is told there is new output below"

    page.click("#jump")
    expect(log).to_contain_text("tick 70", timeout=30_000)
    assert log.evaluate(gap) < 40, "after 'new output below' it follows again"


def test_llm_job_shows_reasoning_and_tokens_then_continues(start_server, browser):
    """Pick the LLM on the upload page, see its reasoning, commands and token usage
    live, then start a follow-up from the finished job's page."""
    import sys
    sys.path.insert(0, str(REPO))
    from tests.fake_llm import FakeLLM, call, finish
    from tests.llm_support import new_key

    turns = [call("shell", text="Read the measurements first.", command="head -2 /workspace/penguins.csv"),
             finish("Looked at the data."),
             call("shell", text="Continue from the previous results.", command="ls /workspace/previous"),
             finish("Continued.")]
    with FakeLLM("openai", turns, key=new_key()) as fake:
        server = start_server(APP_MODELS="openai:test-model", AGENT_SANDBOX_MY_FILES="", **fake.env())
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.base + "/")
        page.set_input_files("#file-input", str(PENGUINS))
        page.select_option("select[name=model]", "openai:test-model")
        page.fill("#instructions", "look at the penguins")
        page.click("#submit")
        page.wait_for_url("**/jobs/*")
        first_url = page.url
        expect(page.locator("#status")).to_have_text("succeeded", timeout=60000)
        expect(page.locator(".log .step").first).to_contain_text("Read the measurements first.")
        expect(page.locator(".log .cmd-line").first).to_contain_text("head -2 /workspace/penguins.csv")
        expect(page.locator(".log .usage").first).to_contain_text("tokens: 100 in, 20 out")
        expect(page.locator("#tokens")).to_contain_text("240 in 2 calls")
        page.click("#follow-up-open")
        page.fill("#follow-up-instructions", "now only Adelie")
        page.click("#follow-up-form button[type=submit]")
        page.wait_for_url(lambda url: url != first_url and "/jobs/" in url)
        expect(page.locator("#status")).to_have_text("succeeded", timeout=60000)
        expect(page.locator(".meta")).to_contain_text("now only Adelie")
        expect(page.locator(".meta a[href='" + first_url.split(server.base)[1] + "']")).to_be_visible()
        page.goto(server.base + "/")
        expect(page.locator("a.parent")).to_have_count(1)
        assert not errors, errors
