"""26-F8: what a sandbox leaves in its volume cannot fill the emulator's host.

Before: the commit copied a sparse file byte by byte, with no cap (a 2 GB
sparse file in a 504 MB sandbox took 2.1 GB on the host; 100 GB filled its
disk). Now a sparse file stays sparse (what it holds, not its length) and a
commit copies at most the sandbox's disk of data; the rest is left out,
logged.
"""

from __future__ import annotations

import os

import modal

from modal_emulator import volumes
from tests.modal_support import shared_emulator

MB = 1024 * 1024


def real_bytes(folder) -> int:
    return sum(os.lstat(os.path.join(root, name)).st_blocks * 512
               for root, _, names in os.walk(folder) for name in names)


def test_a_sparse_file_costs_the_host_what_it_holds():
    emulator = shared_emulator()
    app = modal.App.lookup("hostile-commit", create_if_missing=True)
    with modal.Volume.ephemeral(version=2) as volume:
        sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=60,
                                       volumes={"/outputs": volume})
        try:
            done = sandbox.exec("sh", "-c", "truncate -s 2G /outputs/huge.bin && echo start | dd of=/outputs/huge.bin "
                                            "conv=notrunc 2>/dev/null && echo kept > /outputs/kept.txt")
            assert done.wait() == 0
        finally:
            sandbox.terminate()
            sandbox.wait(raise_on_termination=False)
        sizes = {entry.path: entry.size for entry in volume.listdir("/")}
        assert sizes == {"huge.bin": 2 * 1024 * MB, "kept.txt": 5}   # its length is what it says
        stored = emulator.folder / "state" / "volumes" / volume.object_id
        assert real_bytes(stored) < 1 * MB, "the host holds what it holds, not 2 GB"
        assert b"".join(volume.read_file("kept.txt")) == b"kept\n"


def test_a_commit_copies_at_most_the_sandboxs_disk(tmp_path):
    private = tmp_path / "sandbox"
    private.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (private / name).write_bytes(os.urandom(MB))
    store = volumes.VolumeStore(tmp_path / "store")
    volume = store.get_or_create("", ephemeral=True, create=True, version=2)
    volumes.commit(volume, private, max_bytes=2 * MB + MB // 2)
    kept = sorted(p.name for p in volume.root.iterdir())
    assert len(kept) == 2 and real_bytes(volume.root) <= 2 * MB + MB // 2


def test_the_block_download_of_a_sparse_file_leaves_its_zeros_out(tmp_path):
    """As Modal does: trailing zero bytes of a block are not sent (the client pads them back)."""
    from modal_emulator.http_server import _read_block

    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.write(b"data")
        f.truncate(8 * MB)
    assert _read_block(path, 0) == b"data"
