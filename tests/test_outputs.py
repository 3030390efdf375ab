import json
import os

import pytest

from agent_sandbox.outputs import DirectorySource, collect_outputs
from agent_sandbox.paths import UnsafePath, safe_join
from agent_sandbox.spec import Limits


@pytest.fixture
def outputs(tmp_path):
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.csv").write_text("x,y\n1,2\n")
    (root / "big.bin").write_bytes(b"0" * 2048)
    secret = tmp_path / "host-secret.txt"
    secret.write_text("do not copy")
    os.symlink(secret, root / "escape")                  # points outside
    os.symlink(tmp_path, root / "dirlink")               # a directory outside
    os.mkfifo(root / "pipe")
    (root / "manifest.json").write_text("{}")            # a forged manifest
    return root


def test_collect_refuses_links_specials_and_oversize(outputs, tmp_path):
    results = tmp_path / "results"
    manifest = collect_outputs(DirectorySource(outputs), results, Limits(max_file_bytes=1024))
    assert [f["path"] for f in manifest["files"]] == ["a.txt", "sub/b.csv"]
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert "symlink" in skipped["escape"] and "symlink" in skipped["dirlink"]
    assert "not a regular file" in skipped["pipe"]
    assert "per-file limit" in skipped["big.bin"]
    assert "reserved" in skipped["manifest.json"]
    assert not (results / "escape").exists() and not (results / "dirlink").exists()
    assert json.loads((results / "manifest.json").read_text()) == manifest
    assert (results / "sub" / "b.csv").read_text() == "x,y\n1,2\n"
    assert not any(p.name.endswith(".partial") for p in results.rglob("*"))


def test_collect_caps_file_count(outputs, tmp_path):
    manifest = collect_outputs(DirectorySource(outputs), tmp_path / "r", Limits(max_files=1))
    assert [f["path"] for f in manifest["files"]] == ["a.txt"]
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert "limit of 1 files" in reasons["sub/b.csv"]


def test_open_refuses_a_symlink_swapped_in_after_listing(outputs, tmp_path):
    source = DirectorySource(outputs)
    with pytest.raises(OSError):
        source.open("escape")
    with pytest.raises(OSError):  # a folder on the way is a link to outside
        source.open("dirlink/host-secret.txt")
    assert source.open("sub/b.csv").read() == b"x,y\n1,2\n"
    with pytest.raises(OSError):
        source.open("pipe")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "", "..\\\\x"])
def test_safe_join_refuses_escapes(tmp_path, bad):
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, bad)


def test_large_files_come_back_flagged_compact_first_and_the_rest_is_explained(tmp_path):
    out = tmp_path / "out"
    (out / "t").mkdir(parents=True)
    for name, size in {"report.md": 10, "t/t.csv": 3 * 1024 * 1024, "t/t.parquet": 2 * 1024 * 1024,
                       "t/t.csv.gz": 1024 * 1024, "t/plot.png": 500}.items():
        (out / name).write_bytes(b"x" * size)
    limits = Limits(preview_bytes=512 * 1024, max_total_bytes=4 * 1024 * 1024)
    manifest = collect_outputs(DirectorySource(out), tmp_path / "r", limits)
    files = {f["path"]: f for f in manifest["files"]}
    assert list(files) == ["report.md", "t/plot.png", "t/t.csv.gz", "t/t.parquet"]  # sorted by path
    assert files["t/t.parquet"]["large"] is True and "large" not in files["report.md"]
    (skipped,) = manifest["skipped"]
    assert skipped["path"] == "t/t.csv" and skipped["size"] == 3 * 1024 * 1024
    assert skipped["reason"].startswith("3.0 MB, past the per-job total limit of 4.0 MB")
