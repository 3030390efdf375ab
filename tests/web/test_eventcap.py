"""The cap on the events one run stores (frontend/eventcap.py)."""

from agent_sandbox import events as ev
from frontend.eventcap import EventBudget


def stored(budget, events):
    return [e for event in events for e in budget.admit(event)]


def test_past_the_count_the_run_is_counted_and_the_host_events_still_stored():
    budget = EventBudget("j", max_events=3, max_bytes=1 << 20)
    out = [ev.make_event(ev.OUTPUT, {"text": f"line {i}"}) for i in range(10)]
    host = [ev.make_event(ev.STATUS, {"status": "collecting"}), ev.make_event(ev.USAGE, {"calls": 1})]
    finished = [ev.make_event(ev.RUN_FINISHED, {"status": "succeeded"})] * 2
    kept = stored(budget, out + host + finished)
    assert [e["type"] for e in kept] == ["output"] * 3 + ["warning", "status", "usage", "run_finished"]
    assert "limit of 3 events" in kept[3]["data"]["message"]
    summary = budget.summary()["data"]["message"]
    assert summary.startswith("not stored: 8 events") and "7 output, 1 run_finished" in summary


def test_past_the_bytes_nothing_more_of_the_run_is_stored_however_small():
    budget = EventBudget("j", max_events=1000, max_bytes=10_000)
    big, small = ev.make_event(ev.OUTPUT, {"text": "A" * 6000}), ev.make_event(ev.STEP, {"text": "hi"})
    kept = stored(budget, [big, big, small, small])
    assert [e["type"] for e in kept] == ["output", "warning"]
    assert EventBudget("j", 10, 10_000).summary() is None


def test_the_page_reads_the_logs_tail_within_a_byte_budget(tmp_path):
    from frontend.store import JobStore
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job({"id": "j", "owner": "o", "backend": "local", "model": "offline"})
    for i in range(100):
        store.append_event("j", ev.make_event(ev.OUTPUT, {"text": f"{i:03d}" + "A" * 10_000}))
    tail = store.recent_events("j", max_events=50, max_bytes=100_000)
    assert [e["seq"] for e in tail] == list(range(92, 101))   # 9 events of ~10 KB fit
    assert len(store.recent_events("j", max_events=5, max_bytes=10**9)) == 5
    assert store.recent_events("j", max_events=50, max_bytes=100) == []
