"""Results on the server: grouping by table, hidden working files, self-contained report.html."""

import io
import json
import zipfile

from frontend import render, results_page
from frontend import results as res

PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 100


def write(results, files):
    manifest = {"files": [], "skipped": []}
    for path, data in files.items():
        full = results / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        manifest["files"].append({"path": path, "size": len(data), "sha256": ""})
    return manifest


def test_report_html_gets_listed_images_embedded_and_a_viewport(tmp_path):
    (tmp_path / "secret.png").write_bytes(PNG)  # outside the listed outputs
    results = tmp_path / "r"
    html = ('<html><head><title>r</title></head><body><img src="t/plots/a.png"><img alt=x src=\'t/plots/a.png\'>'
            '<img src="../secret.png"><img src="big.png"><img src="https://example.org/x.png"></body></html>')
    manifest = write(results, {"report.html": html.encode(), "t/plots/a.png": PNG, "big.png": PNG * 100})
    images = {f["path"]: f["size"] for f in manifest["files"]}
    out = render.self_contained_html(html, "report.html", render.image_loader(results, images, 5000))
    assert out.count("data:image/png;base64,") == 2
    assert 'src="../secret.png"' in out and 'src="big.png"' in out and "https://example.org/x.png" in out
    assert out.index('name="viewport"') < out.index("<title>")


def test_results_grouped_by_table_with_working_files_hidden(tmp_path):
    results = tmp_path / "r"
    profile = {"table": "t", "source": "t.csv", "rows_after": 2, "columns_after": 1,
               "columns": [{"name": "x", "type": "integer", "unit": "mM"}],
               "findings": [{"kind": "outlier", "column": "x", "rows": 1, "detail": "9 is high"}],
               "plots": [{"kind": "hist", "columns": ["x"], "path": "t/plots/x.png"}]}
    manifest = write(results, {"t/t.csv": b"x\n1\n9\n", "t/t.profile.json": json.dumps(profile).encode(),
                               "t/plots/x.png": PNG, ".scratch/db.tmp": b"x", "t/t.wal": b"x",
                               "scripts/a.py": b"print(1)", "report.md": b"# R", "loose.png": PNG,
                               "other/data.csv": b"a\n1\n"})
    manifest["files"][0]["large"] = True
    view = results_page.build(results, manifest, {"status": "cancelled"})
    assert [t["name"] for t in view["tables"]] == ["t", "data"]
    t = view["tables"][0]
    assert [p["title"] for p in t["plots"]] == ["hist of x"]
    assert [d["path"] for d in t["downloads"]] == ["t/t.csv", "t/t.profile.json"]
    assert t["preview"]["column_info"][0] == {"name": "x", "type": "integer", "unit": "mM", "numeric": True}
    assert [(f["kind"], f["detail"], f["table"], f["count"]) for f in view["findings"]] == [("outlier", "9 is high", "t", 1)]
    assert [f["path"] for f in view["folded"]] == ["scripts/a.py"]
    assert [f["path"] for f in view["images"]] == ["loose.png"]
    assert [f["path"] for f in view["others"]] == ["report.md"]
    assert view["partial"] == "the job was cancelled"
    shown = json.dumps(view, default=str)
    assert ".scratch" not in shown and "t.wal" not in shown
    with zipfile.ZipFile(io.BytesIO(b"".join(res.stream_zip(results, manifest, "job")))) as zf:
        assert "job/t/t.csv" in zf.namelist() and not any("scratch" in n or n.endswith(".wal") for n in zf.namelist())
        assert ".scratch" not in zf.read("job/manifest.json").decode()


def test_a_rendered_report_keeps_its_table_of_contents_working():
    """The report's contents link to its headings (GitHub's anchors): on our page every
    such link must land on a heading, and the ids must not clash with the page's own."""
    import re

    from agent_sandbox.agent.playbook.scripts.make_report import slug
    titles = ["Findings", "Table penguins (raw)", "Columns", "Table iris", "Columns"]
    text = "# Report\n\n## Contents\n\n" + "".join(f"- [{t}](#{slug(t)})\n" for t in titles[:3])
    text += "- [Columns](#columns-1)\n" + "".join(f"\n## {t}\n\nbody\n" for t in titles)
    out = render.render_markdown(text, "report.md", lambda p: "/out/" + p)
    ids = set(re.findall(r'<h\d id="([^"]+)"', out))
    links = re.findall(r'href="#([^"]+)"', out)
    assert len(links) == 4 and set(links) <= ids, (links, ids)
    assert all(i.startswith(render.HEADING_ID_PREFIX) for i in ids)


def test_report_html_is_read_as_a_browser_reads_it_and_otherwise_left_as_written():
    from frontend.htmltags import start_tags
    png = lambda p: ("image/png", b"PNG") if p == "a.png" else None  # noqa: E731
    text = ('<!doctype html><HEAD><Meta NAME="Viewport" content="x"></HEAD><!-- <img src="a.png"> -->'
            '<script>document.write("<img src=a.png>")</script><img\nsrc = a.png alt="&quot;>">'
            "<p title='<img src=a.png>'>x</p><img src=\"a.png\" src=\"b.png\"><img src=\"a.png")
    out = render.self_contained_html(text, "report.html", png)
    assert out.count("data:image/png") == 2, out              # not in a comment, a script or an attribute
    assert "<meta name" not in out and 'content="x"' in out   # it has a viewport: none added
    assert out.endswith('<img src="a.png') and out.startswith("<!doctype html><HEAD>")   # an open tag ends it
    assert [t.name for t in start_tags(text)] == ["head", "meta", "script", "img", "p", "img"]
    plain = render.self_contained_html("<p>hi", "r.html", png)
    assert plain.startswith(render.PHONE_STYLE) and plain.endswith("<p>hi")
