"""The offline playbook is honest about instructions it cannot follow (issue 23): its report
says so; and a follow-up never analyses the previous job's results as new uploads."""

from __future__ import annotations

from agent_sandbox.agent.models import Task
from agent_sandbox.agent.models.offline import plan, unapplied_instructions, uploads
from tests.test_playbook_agent import of_type, run_agent


def test_the_report_says_the_instructions_were_not_applied(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "runs.csv").write_text("sample,od\n" + "".join(f"s{i},{i / 10}\n" for i in range(10)))
    events = run_agent(ws, tmp_path / "out", "--instructions", "Compare strain B with strain A\nRemove duplicate rows.")
    assert events[-1]["data"]["status"] == "succeeded"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Instructions given to this job were not applied: “Compare strain B with strain A”" in report
    assert "not applied" in (tmp_path / "out" / "report.html").read_text()
    assert any("--drop-duplicates" in e["data"]["command"] for e in of_type(events, "command_started"))


def test_only_options_are_all_applied():
    assert unapplied_instructions(Task("Remove duplicate rows.", "/w", "/o")) == ""
    assert unapplied_instructions(Task("", "/w", "/o")) == ""
    assert unapplied_instructions(Task("plot log scale\nRemove duplicate rows.", "/w", "/o")) == "plot log scale"


def test_a_follow_up_does_not_analyse_the_previous_results():
    files = [{"path": "data.csv", "size": 10}, {"path": "previous/data/data.csv", "size": 10},
             {"path": "previous_2/report.md", "size": 5}, {"path": "previous_data.csv", "size": 3}]
    task = Task("now only strain B", "/workspace", "/outputs", files=files, previous="Instructions: ...")
    assert [f["path"] for f in uploads(task)] == ["data.csv", "previous_data.csv"]
    analysed = [f["path"] for s in plan(task) if s.kind == "analyze" for f in s.files]
    assert sorted(analysed) == ["data.csv", "previous_data.csv"]
    assert len(uploads(Task("", "/w", "/o", files=files))) == 4, "outside a follow-up, previous/ is an upload"
