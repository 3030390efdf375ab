import io
import json
import threading

from agent_sandbox import events as ev


def test_writer_numbers_and_flushes_one_line_per_event():
    out, mirror = io.StringIO(), io.StringIO()
    w = ev.EventWriter(out, mirror)
    w.emit(ev.RUN_STARTED, {"model": "offline"})
    w.emit(ev.OUTPUT, {"stream": "stdout", "text": "línea 1\nline 2\n"}, step=1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and mirror.getvalue() == out.getvalue()
    parsed = [ev.parse_line(line) for line in lines]
    assert [p["seq"] for p in parsed] == [1, 2]
    assert parsed[1]["data"]["text"] == "línea 1\nline 2\n" and parsed[1]["step"] == 1
    assert all(p["v"] == ev.PROTOCOL_VERSION for p in parsed)


def test_writer_is_thread_safe():
    out = io.StringIO()
    w = ev.EventWriter(out)
    threads = [threading.Thread(target=lambda: [w.emit(ev.OUTPUT, {"text": "x" * 100}) for _ in range(200)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [json.loads(line)["seq"] for line in out.getvalue().splitlines()]
    assert sorted(seqs) == list(range(1, 801))


def test_non_event_lines_are_kept_raw():
    for line in ["plain text", "{broken json", '{"no": "version"}', '{"v": 99, "type": "x"}', ""]:
        event = ev.parse_line(line + "\n", "stderr")
        assert event["type"] == ev.RAW
        assert event["data"] == {"stream": "stderr", "text": line}
    assert ev.parse_line(b"\xff\xfe bytes").get("data")["text"].endswith("bytes")


def test_render_is_readable():
    assert ev.render(ev.make_event(ev.COMMAND_STARTED, {"command": "ls"}, step=2)) == "[2] $ ls"
    assert "timed out" in ev.render(ev.make_event(ev.COMMAND_FINISHED, {"exit_code": -9, "duration": 1,
                                                                         "timed_out": True}))
    assert ev.render(ev.make_event(ev.RUN_FINISHED, {"status": "failed", "reason": "x"})).endswith("failed (x)")
