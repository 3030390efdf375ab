"""The Modal backend as the cloud really behaves (issue 24), on its one asyncio runner
(issue 25.1). Real `modal` client, our emulator made as unkind as Modal: a read
that fails, a sandbox that waits to be scheduled, a volume that syncs late."""

from __future__ import annotations

import os
import threading
import time

import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends.contract import MAX_LINE
from agent_sandbox.backends.modal import JOB_TAG, ModalBackend
from agent_sandbox.backends.modal_run import LineCutter
from agent_sandbox.backends.modal_runner import ModalRunner
from agent_sandbox.spec import Limits
from tests.conftest import make_spec
from tests.modal_support import fast_retrying_backend, shared_emulator


@pytest.fixture(scope="module")
def emulator():
    return shared_emulator()


@pytest.fixture
def backend(emulator):
    yield from fast_retrying_backend(emulator, settle=20)


def test_a_failed_download_loses_that_file_only(backend, emulator, tmp_path, recorder):
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo a > /outputs/good.csv; echo b > /outputs/bad.csv; "
                                                             "mkdir /outputs/t; echo c > /outputs/t/bad-too.txt"}])
    with emulator.behaving(fail_read="*bad*"):
        result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert [f["path"] for f in result.manifest["files"]] == ["good.csv"]
    skipped = {s["path"]: s["reason"] for s in result.manifest["skipped"]}
    assert set(skipped) == {"bad.csv", "t/bad-too.txt"}
    assert all("could not be read" in r and "download from Modal failed" in r for r in skipped.values())
    assert sorted(p.name for p in spec.results.rglob("*") if p.is_file()) == ["good.csv", "manifest.json"]
    assert not [e for e in recorder.of_type(ev.WARNING) if "lost" in e["data"]["message"]], "nothing is lost"


@pytest.mark.parametrize("stop", ["cancel", "run_timeout"])
def test_cancel_and_the_run_timeout_act_while_modal_schedules(backend, emulator, tmp_path, recorder, stop):
    cancel = threading.Event()
    limits = Limits(run_timeout=2 if stop == "run_timeout" else 120, command_timeout=60, idle_timeout=60,
                    disk_mb=1024)
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo never"}], limits=limits)
    if stop == "cancel":
        threading.Timer(1.5, cancel.set).start()
    with emulator.behaving(schedule_delay=30):
        result = backend.run(spec, recorder, cancel)
    assert result.status == (ev.CANCELLED if stop == "cancel" else ev.TIMEOUT)
    assert result.duration < 8, "not the 30 s Modal took to schedule it"
    assert not recorder.of_type(ev.RUN_STARTED)
    [sandbox] = [sb for sb in emulator.state()["sandboxes"] if sb["tags"].get(JOB_TAG) == spec.job_id]
    assert sandbox["status"] == "TERMINATED" and not sandbox["scheduled"]


def test_outputs_that_sync_late_still_come_back(backend, emulator, tmp_path, recorder):
    # Modal syncs a v2 volume at termination with no promise of timing: the host lists
    # until it holds what the agent said it left.
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "for i in 1 2 3; do echo $i > /outputs/$i.txt; done"}])
    with emulator.behaving(commit_delay=3):
        result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    assert [f["path"] for f in result.manifest["files"]] == ["1.txt", "2.txt", "3.txt"]
    assert not [e for e in recorder.of_type(ev.WARNING) if "lost" in e["data"]["message"]]


def test_a_volume_that_never_syncs_in_time_says_what_is_lost(emulator, tmp_path, recorder):
    backend = ModalBackend(sync_wait=2)
    spec = make_spec(tmp_path, [{"kind": "shell", "command": "echo a > /outputs/a.txt; echo b > /outputs/b.txt"}])
    with emulator.behaving(commit_delay=8):
        result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED and result.manifest["files"] == []
    [warning] = [e["data"]["message"] for e in recorder.of_type(ev.WARNING) if "lost" in e["data"]["message"]]
    assert "left 2 files" in warning and "2 are lost" in warning


def test_output_is_read_as_bytes_a_bad_byte_costs_one_character(backend, tmp_path, recorder):
    command = ("printf 'caf\\351 ok\\n'; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo after-the-long-line")
    spec = make_spec(tmp_path, [{"kind": "shell", "command": command}],
                     limits=Limits(run_timeout=120, command_timeout=60, idle_timeout=60, disk_mb=1024,
                                   max_output_chars=10_000_000))
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))
    assert "caf\ufffd ok" in text and "after-the-long-line" in text


def test_one_runner_drives_many_jobs_without_a_thread_each(emulator, tmp_path):
    # Its own runner, so its concurrency settings are these (a process's runner is made once).
    backend = ModalBackend(create_concurrency=1, download_concurrency=2)
    runner = ModalRunner(backend.config)
    before = threading.active_count()
    specs = [make_spec(tmp_path / str(i), [{"kind": "shell", "command": f"sleep 2; echo {i} > /outputs/n.txt"}])
             for i in range(12)]
    disk = emulator.state()["sandbox_limits"]["disk_mb"]
    emulator.admin("POST", "/emulator/limits", {"sandbox_disk_mb": 64})   # each is reserved on the host
    try:
        futures = [runner.submit(backend, spec, lambda event: None) for spec in specs]
        peak = before
        while not all(f.done() for f in futures):
            peak = max(peak, threading.active_count())
            time.sleep(0.05)
    finally:
        emulator.admin("POST", "/emulator/limits", {"sandbox_disk_mb": disk})
    results = [f.result() for f in futures]
    assert [r.status for r in results] == [ev.SUCCEEDED] * len(specs), [r.reason for r in results]
    assert [(s.results / "n.txt").read_text() for s in specs] == [f"{i}\n" for i in range(12)]
    # The runner's two, two download threads and the client's hashing pool of the one creation at a
    # time (min(32, CPUs + 4) threads): not the three or more per job of a thread per job.
    pool = min(32, (os.cpu_count() or 1) + 4)
    assert peak - before <= 2 + 2 + pool + 2, f"{peak - before} more threads for 12 jobs"


def test_the_line_cutter_keeps_a_lines_head_and_never_more():
    cutter = LineCutter(8)
    pieces = [b"short\nlong-line-", b"goes-on", b"-and-on\nlast", b" bit"]
    lines = [line for piece in pieces for line in cutter.feed(piece)] + list(cutter.end())
    assert lines == [b"short\n", b"long-lin", b"last bit"]
    assert LineCutter(MAX_LINE).limit == MAX_LINE
