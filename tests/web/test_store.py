"""The job store on a real SQLite file, where the disk runs out."""

from __future__ import annotations

import sqlite3

import pytest

from frontend.store import JobStore


def test_a_full_disk_raises_its_own_error_and_the_store_goes_on(tmp_path):
    """SQLite rolls a transaction back by itself when the disk is full; the store must
    report that error (not 'cannot rollback') and keep working once there is room."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job({"id": "job1", "owner": "o", "backend": "local", "model": "offline"})
    db = store._db()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")   # a full disk, as SQLite sees it
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.append_event("job1", {"type": "raw", "data": {"text": "x" * 100_000}})
    db.execute("PRAGMA max_page_count=1073741823")
    assert store.append_event("job1", {"type": "raw", "data": {"text": "room again"}}) == 1
    assert [e["data"]["text"] for e in store.iter_events("job1")] == ["room again"]
