"""The server-rendered log (pages without JavaScript): steps, routine folds, RESULT lines, phases."""

from frontend import logview


def ev(type_, step=None, **data):
    e = {"type": type_, "data": data}
    if step is not None:
        e["step"] = step
    return e


def test_build_log_folds_routine_steps_and_long_outputs_and_reads_results():
    events = [ev("status", status="starting"), ev("run_started", model="offline", environment="local")]
    for n, name in [(1, "a.py"), (2, "b.py")]:
        events += [ev("step", n, text=f"Write {name}"), ev("command_started", n, kind="write_file", command=f"write scripts/{name}"),
                   ev("command_finished", n, exit_code=0, duration=0.0)]
    events += [ev("step", 3, text="Analyse x.csv"), ev("command_started", 3, kind="shell", command="python a.py /workspace/x.csv")]
    events += [ev("output", 3, stream="stdout", text=f"line {i}\n") for i in range(20)]
    events += [ev("output", 3, stream="stdout", text='RESULT {"file": "x.csv", "status": "skipped", "reason": "empty"}\n'),
               ev("command_finished", 3, exit_code=0, duration=1.5), ev("message", 3, text="Done"),
               ev("run_finished", status="succeeded"), ev("status", status="collecting")]
    blocks = logview.build_log(events)
    assert [b["kind"] for b in blocks] == ["note", "note", "routine", "step", "note", "note"]
    assert blocks[2]["title"] == "Steps 1–2 · wrote 2 files: scripts/a.py, scripts/b.py"
    command = blocks[3]["commands"][0]
    assert command["folded"] and command["total_lines"] == 21 and command["exit"] == 0
    assert command["lines"][-1] == ("result", "↷ x.csv skipped: empty")
    assert blocks[3]["notes"] == [{"cls": "msg", "text": "Done"}]
    assert logview.phase(events, "running") == "collecting"
    assert logview.phase(events[:1], "running") == "starting"
    assert logview.phase(events[-3:-2], "running", partial=True) == "running"
    assert logview.phase(events, "failed") == "done"


def test_times_read_without_javascript():
    assert logview.duration(65) == "1 min 05 s" and logview.duration(7) == "7 s"
    assert logview.duration(3720) == "1 h 02 min" and logview.duration(None) == "–"
    assert logview.clock(0) == "–" and logview.clock(1764460800).endswith("UTC")
