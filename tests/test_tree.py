"""Hostile trees, as a sandbox can leave them: walked, copied and removed without
recursion, long paths, followed links or crossing into another filesystem."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent_sandbox import tree
from agent_sandbox.outputs import MAX_DEPTH, DirectorySource, collect_outputs
from agent_sandbox.spec import Limits

# Deeper than Python's recursion limit (os.walk, shutil.rmtree fail) and than PATH_MAX
# ("d/" x 2100 > 4096 bytes); the conformance suite builds 10,000 levels in real sandboxes.
DEEP = 2100


@pytest.fixture
def tmp_path(tmp_path):
    """pytest removes old temporary folders with shutil.rmtree, which a deep tree breaks:
    each test removes its own."""
    yield tmp_path
    for child in tmp_path.iterdir():
        tree.remove_tree(child)


def deep(root, levels: int, name: str = "d") -> None:
    """`levels` nested folders under root (relative steps: deeper than PATH_MAX is fine)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("bottom.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
        f.write(b"x" * 1000)
    os.close(fd)


def test_walk_stops_at_the_depth_and_never_follows_links(tmp_path):
    deep(tmp_path, DEEP)
    (tmp_path / "ok.txt").write_text("ok")
    os.symlink("/etc", tmp_path / "etc-link")
    found = {f.path: f for f in tree.walk(tmp_path, 5, 1000)}
    assert found["ok.txt"].kind == tree.FILE and found["etc-link"].kind == tree.SYMLINK
    assert "/".join(["d"] * 6) in found and "/".join(["d"] * 7) not in found   # listed at the cut, not entered
    assert not any(p.startswith("etc-link/") for p in found)


def test_walk_stops_listing_after_max_entries(tmp_path):
    for i in range(50):
        (tmp_path / f"f{i:02}").write_text("")
    found = list(tree.walk(tmp_path, 5, 10))
    assert len(found) == 11 and "more than 10 entries" in found[-1].problem


def test_collect_brings_back_the_normal_files_and_reports_the_deep_folder(tmp_path):
    outputs = tmp_path / "outputs"
    (outputs / "tables").mkdir(parents=True)
    (outputs / "tables" / "t.csv").write_text("a\n1\n")
    (outputs / "deep").mkdir()
    deep(outputs / "deep", DEEP)
    manifest = collect_outputs(DirectorySource(outputs), tmp_path / "results", Limits())
    assert [f["path"] for f in manifest["files"]] == ["tables/t.csv"]
    [skipped] = manifest["skipped"]
    assert skipped["path"].count("/") == MAX_DEPTH and f"deeper than {MAX_DEPTH}" in skipped["reason"]


def test_remove_tree_removes_deep_wide_and_locked_trees(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    deep(root, DEEP)
    for i in range(300):
        (root / f"wide{i}").mkdir()
    (root / "locked" / "inner").mkdir(parents=True)
    (root / "locked" / "inner" / "f").write_text("x")
    os.chmod(root / "locked" / "inner", 0o000)
    os.chmod(root / "locked", 0o500)
    os.symlink(tmp_path / "keep", root / "link-out")
    (tmp_path / "keep").write_text("outside")
    tree.remove_tree(root)
    assert not root.exists()
    assert (tmp_path / "keep").read_text() == "outside"   # the link went, not its target


def test_remove_tree_refuses_to_cross_into_another_filesystem(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root (CI runs the suite as root)")
    root = tmp_path / "root"
    (root / "mnt").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(root / "mnt")], check=True)
    try:
        (root / "mnt" / "precious").write_text("keep")
        with pytest.raises(OSError, match="another filesystem"):
            tree.remove_tree(root)
        assert (root / "mnt" / "precious").read_text() == "keep"
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)
    tree.remove_tree(root)
    assert not root.exists()


def test_copy_tree_keeps_links_and_fifos_and_leaves_out_the_deep_part(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    os.symlink("a.txt", src / "link")
    os.mkfifo(src / "fifo")
    deep(src, 300)
    left_out = tree.copy_tree(src, tmp_path / "dst", 100, 100_000)
    dst = tmp_path / "dst"
    assert (dst / "a.txt").read_text() == "a" and os.readlink(dst / "link") == "a.txt"
    assert os.path.exists(dst / "fifo") and not (dst / "fifo").is_file()
    assert len(left_out) == 1 and "deeper than 100" in left_out[0]
    tree.remove_tree(src)
    tree.remove_tree(dst)
