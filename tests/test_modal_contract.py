"""Contract test: the product flow of the PRD with public `modal` APIs only,
against our emulator. If an upgrade of `modal` changes the wire protocol the
emulator speaks, this fails first (and plainly)."""

from __future__ import annotations

import json

import modal
import pytest

from tests.modal_support import shared_emulator

AGENT = """
import json, os, sys, time
print(json.dumps({"cwd": os.getcwd(), "files": sorted(os.listdir("/workspace")),
                  "task": bool(os.environ.get("MODAL_TASK_ID")),
                  "secret": os.environ.get("FLOW_SECRET") == "s3cret"}), flush=True)
for i in range(3):
    print(f"step {i}", flush=True)
    time.sleep(0.3)
print("a warning", file=sys.stderr, flush=True)
os.makedirs("/outputs/report", exist_ok=True)
open("/outputs/report/summary.md", "w").write(open("/workspace/data.csv").read().upper())
open("/outputs/big.bin", "wb").write(b"x" * (6 * 1024 * 1024))
"""
MAX_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def emulator():
    return shared_emulator()


def test_prd_flow_with_public_modal_apis(emulator, tmp_path):
    run_prd_flow(tmp_path)


def run_prd_flow(tmp_path, app_name: str = "contract-test") -> None:
    """The flow, against whatever Modal the client points at (tests/live runs it on Modal)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "data.csv").write_text("a,b\n1,2\n")
    (workspace / "agent.py").write_text(AGENT)

    app = modal.App.lookup(app_name, create_if_missing=True)
    image = modal.Image.debian_slim(python_version="3.11").add_local_dir(str(workspace), "/workspace")
    with modal.Volume.ephemeral(version=2) as volume:
        sandbox = modal.Sandbox.create(
            app=app, image=image, volumes={"/outputs": volume}, timeout=120, workdir="/workspace",
            secrets=[modal.Secret.from_dict({"FLOW_SECRET": "s3cret"})], block_network=True,
            cpu=1.0, memory=512)
        try:
            process = sandbox.exec("python", "agent.py", bufsize=1, timeout=60)
            lines = list(process.stdout)   # bufsize=1: whole lines, as they come
            stderr = process.stderr.read()
            assert process.wait() == 0
        finally:
            sandbox.terminate()
            sandbox.wait(raise_on_termination=False)   # the volume syncs at termination

        first = json.loads(lines[0])
        assert first == {"cwd": "/workspace", "files": ["agent.py", "data.csv"], "task": True, "secret": True}
        assert [line.rstrip("\n") for line in lines[1:]] == ["step 0", "step 1", "step 2"]
        assert stderr == "a warning\n"

        entries = {e.path: e for e in volume.listdir("/", recursive=True)}
        assert entries["report"].type == modal.volume.FileEntryType.DIRECTORY
        assert entries["big.bin"].size > MAX_BYTES   # known before any download: skipped by size
        assert b"".join(volume.read_file("report/summary.md")) == b"A,B\n1,2\n"

