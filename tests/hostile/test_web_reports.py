"""Issue 26, F2 F15 F18: what an agent writes as its report, or as any output file, cannot stall
the server or run as script on the app's origin. Real server process, real local sandbox; the
agent (the scripted model) writes the hostile files."""

from __future__ import annotations

import time

from tests.attack import Bystander, cpu_seconds, figure
from tests.web.web_helpers import wait_finished

# 150 KB: ordinary text, then 60 KB of `<img ` with no `>` anywhere. A backtracking regex
# looking for each img's `src` scans to the end of the file from every one of them.
QUADRATIC_HTML = "'<html><body><p>' + 'findings ' * 10000 + '<img ' * 12000"
# 2 MB of table rows: Markdown that markdown-it renders at about 70 KB a second.
SLOW_MARKDOWN = "'|a|b|\\n|-|-|\\n' + '|1|2|\\n' * 349000"


def written_by_the_agent(client, files: dict[str, str]) -> str:
    """A finished job whose agent wrote each file (name -> a Python expression of its text)."""
    code = "\n".join(f"open('/outputs/{name}', 'w').write({expr})" for name, expr in files.items())
    job = client.submit([{"kind": "python", "code": code}]).json()
    assert wait_finished(client, job["id"], timeout=180)["status"] == "succeeded"
    return job["id"]


def test_f2_a_quadratic_report_html_stalls_nobody(start_server):
    server = start_server()
    owner, other = server.client(), server.client(source="127.0.0.2")
    job_id = written_by_the_agent(owner, {"report.html": QUADRATIC_HTML})
    with Bystander(server.base + "/api/jobs", other.http) as bystander:
        start = time.monotonic()
        resp = owner.get(f"/api/jobs/{job_id}/outputs/report.html", timeout=600)
        took = time.monotonic() - start
        time.sleep(1)   # the bystander keeps asking a little after
    figure("F2", f"150 KB report.html: the view took {took:.2f} s; another user's requests waited "
                 f"at most {bystander.worst:.2f} s ({len(bystander.times)} requests)")
    assert resp.status_code == 200 and resp.headers["Content-Security-Policy"] == "sandbox"
    assert bystander.worst < 2.0 and not bystander.failures
    assert took < 5.0


def test_f15_a_slow_report_md_costs_one_bounded_render(start_server):
    server = start_server(APP_RENDER_SECONDS=3)
    owner, other = server.client(), server.client(source="127.0.0.2")
    job_id = written_by_the_agent(owner, {"report.md": SLOW_MARKDOWN})
    pid = server.proc.pid
    costs, views = [], []
    with Bystander(server.base + "/api/jobs", other.http) as bystander:
        for _ in range(2):
            cpu, start = cpu_seconds(pid), time.monotonic()
            page = owner.get(f"/jobs/{job_id}/view/report.md", timeout=600)
            views.append(time.monotonic() - start)
            costs.append(cpu_seconds(pid) - cpu)
            assert page.status_code == 200
    figure("F15", f"2 MB report.md, 2 views: CPU {', '.join(f'{c:.1f}' for c in costs)} s, "
                  f"took {', '.join(f'{v:.1f}' for v in views)} s; another user waited at most {bystander.worst:.2f} s")
    assert costs[0] < 3 + 2.0 and costs[1] < 0.5   # one render, cut at its time limit; then cached
    assert bystander.worst < 2.0 and not bystander.failures
    assert f"/api/jobs/{job_id}/outputs/report.md" in page.text   # the raw file is offered instead


def test_f18_agent_written_files_never_run_as_script_on_our_origin(start_server):
    server = start_server()
    owner = server.client()
    files = {"evil.js": "'alert(document.cookie)'", "evil.mjs": "'export default 1'",
             "page.xhtml": "'<html xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></html>'",
             "plot.svg": "'<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>'",
             "report.html": "'<script>alert(1)</script>'", "style.css": "'body{}'", "notes.txt": "'hi'"}
    job_id = written_by_the_agent(owner, files)
    served, responses = {}, {}
    for name in files:
        resp = responses[name] = owner.get(f"/api/jobs/{job_id}/outputs/{name}")
        served[name] = resp.headers["Content-Type"], resp.headers.get("Content-Disposition", "inline")
    figure("F18", "served as: " + "; ".join(f"{n} {k} ({d.split(';')[0]})" for n, (k, d) in served.items()))
    for name, resp in responses.items():
        kind, disposition = served[name]
        assert resp.status_code == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "javascript" not in kind and "ecmascript" not in kind, (name, kind)
        sandboxed = resp.headers.get("Content-Security-Policy") == "sandbox"
        assert disposition.startswith("attachment") or kind.startswith("text/plain") or sandboxed
    for name in ("evil.js", "evil.mjs", "style.css"):
        assert served[name] == ("application/octet-stream", f'attachment; filename={name}'), served[name]
    for name in ("page.xhtml", "plot.svg", "report.html"):
        assert responses[name].headers["Content-Security-Policy"] == "sandbox", name
