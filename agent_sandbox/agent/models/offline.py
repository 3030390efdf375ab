"""The offline playbook: a deterministic model that needs no network and no key.

It works like a careful analyst with a fixed method. It writes the analysis
scripts (agent_sandbox/playbook/scripts) into <outputs>/scripts/, runs
analyze_table.py once per uploaded file, smallest first, then make_report.py,
and finishes with a summary. Because every step is a real command, the log
shows what ran and the results can be reproduced from scripts/ without the agent.

Files copied from my_files (Task.files entries with `reference`) are the lab's
reference material: they are not analysed, they are listed in the report, and
each analysis may use them (a plate map joins the plate). An upload named like a
plate map (plate_map.csv, layout.xlsx) is analysed and serves the other uploads too. Each action is tagged
with its plan step (`call_id` "step-N"), so observations are read against the
step that caused them.

It reacts to what it observes: a file whose analysis fails gets a warning and
the others go on; the run fails, naming each upload and why, when no uploaded
file yields a table. An instruction to remove duplicates is followed.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from agent_sandbox.agent.models import DEFAULT_INSTRUCTIONS, FINISH, SHELL, WRITE_FILE, Action, Task, Turn
from agent_sandbox.agent.playbook import SCRIPT_NAMES, script_source
from agent_sandbox.agent.playbook.scripts.common import snake_case

BIG_FILE = 100 * 1024 * 1024  # before a file this large, write a first report in case it runs out of time
TAG = "step-"
MAP_EXTENSIONS = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm")  # reference files that may be plate maps
PLATE_MAP_NAME = re.compile(r"plate[ _-]?(map|layout)|(^|[ _-])(layout|platemap)([ _-]|$)", re.IGNORECASE)
DROP_DUPLICATES = re.compile(r"\b(drop|remove|delete|discard|exclude|dedupe|de-?duplicate)\w*\b.{0,40}\bduplicat"
                             r"|\bde-?duplicate", re.IGNORECASE | re.DOTALL)


@dataclass
class Step:
    kind: str                                  # "write" | "analyze" | "report"
    script: str = ""                           # write
    files: list[dict] = field(default_factory=list)  # analyze: [{path, size, name}]
    preliminary: bool = False                  # report


PREVIOUS_RESULTS = re.compile(r"^previous(_\d+)?/")  # a follow-up's copy of the previous job's results


def uploads(task: Task) -> list[dict]:
    """The files to analyse: not my_files' reference material, nor (in a follow-up) the results
    of the previous job, which are not new data."""
    return [f for f in task.files if not f.get("reference")
            and not (task.previous and PREVIOUS_RESULTS.match(f["path"]))]


def references(task: Task) -> list[dict]:
    return [f for f in task.files if f.get("reference")]


def table_base_names(paths: list[str]) -> dict[str, str]:
    """A unique snake_case base name per input path (file stem, then folder, then extension)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for path in paths:
        p = PurePosixPath(path)
        candidates = [snake_case(p.stem), snake_case("_".join(p.parts[:-1] + (p.stem,))),
                      snake_case(f"{p.stem}_{p.suffix.lstrip('.')}")]
        name = next((c for c in candidates if c and c not in used), None)
        base, n = name or candidates[0] or "file", 1
        while name is None or name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names[path] = name
    return names


def plan(task: Task) -> list[Step]:
    files = sorted(uploads(task), key=lambda f: (f.get("size", 0), f["path"]))
    if not files:
        return []
    names = table_base_names([f["path"] for f in files])
    files = [dict(f, name=names[f["path"]]) for f in files]
    steps = [Step("write", script=s) for s in SCRIPT_NAMES]
    budget = max(1, task.max_steps - len(steps) - 3)  # final report, finish, maybe a first report
    per_step = -(-len(files) // budget)
    batches = [files[i:i + per_step] for i in range(0, len(files), per_step)]
    for batch in batches:
        if batch[-1].get("size", 0) >= BIG_FILE and len(steps) > len(SCRIPT_NAMES):
            steps.append(Step("report", preliminary=True))
        steps.append(Step("analyze", files=batch))
    steps.append(Step("report"))
    return steps


def parse_results(output: str) -> list[dict]:
    """The `RESULT {...}` lines our scripts print last."""
    results = []
    for line in output.splitlines():
        if line.startswith("RESULT "):
            try:
                results.append(json.loads(line[len("RESULT "):]))
            except ValueError:
                pass
    return results


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("RESULT ")]
    return lines[-1][:300] if lines else "no output"


def step_of(turn: Turn) -> int | None:
    tag = turn.action.call_id
    return int(tag[len(TAG):]) if tag.startswith(TAG) and tag[len(TAG):].isdigit() else None


class OfflinePlaybook:
    def __init__(self, name: str = ""):
        self.name = "offline"

    # -- the loop's entry point ---------------------------------------------
    def next_action(self, task: Task, history: list[Turn]) -> Action:
        action = self.choose(task, history)
        action.planned_steps = len(plan(task)) + 1  # the plan and the final summary: "step 3 of 12"
        return action

    def choose(self, task: Task, history: list[Turn]) -> Action:
        steps = plan(task)
        done = [(steps[i], turn) for turn in history if (i := step_of(turn)) is not None and i < len(steps)]
        for step, turn in done:
            if step.kind == "write" and turn.observation and turn.observation.exit_code != 0:
                return Action(FINISH, status="failed", thought="The analysis scripts could not be written.",
                              message=f"Could not write scripts/{step.script}: {last_line(turn.observation.output)}")
        if not steps:
            return self.nothing_uploaded(task)
        if task.max_steps < min_steps():
            return Action(FINISH, status="failed", thought="The step limit is too small for the playbook.",
                          message=f"The offline playbook needs at least {min_steps()} steps (it writes "
                                  f"{len(SCRIPT_NAMES)} scripts, analyses, reports); the limit is {task.max_steps}.")
        index = max((i for t in history if (i := step_of(t)) is not None), default=-1) + 1
        if index >= len(steps):
            return self.finish(task, done)
        step = steps[index]
        warning = self.warning(done[-1] if done else None)
        if step.kind == "write":
            action = self.write_script(task, step, first=index == 0)
        elif step.kind == "analyze":
            action = self.analyze(task, step, warning)
        else:
            action = self.report(task, step, done, warning)
        action.call_id = f"{TAG}{index}"
        return action

    # -- actions ------------------------------------------------------------
    def write_script(self, task: Task, step: Step, first: bool) -> Action:
        thought = f"Write scripts/{step.script}, part of the analysis kept with the results so it can be rerun."
        if first:
            files = uploads(task)
            listed = ", ".join(f"{f['path']} ({human_size(f.get('size', 0))})" for f in files[:20])
            more = f" and {len(files) - 20} more" if len(files) > 20 else ""
            refs = references(task)
            ref_note = (f" Reference files from my_files, used where they apply but not analysed: "
                        f"{', '.join(f['path'] for f in refs[:20])}." if refs else "")
            thought = (f"{len(files)} uploaded file(s): {listed}{more}.{ref_note} Plan: write the analysis scripts, "
                       f"analyse each file (read, clean, profile, find, plot), then write report.md and report.html. "
                       + self.instructions_note(task) + thought)
        return Action(WRITE_FILE, thought=thought, path=f"scripts/{step.script}", content=script_source(step.script))

    def analyze(self, task: Task, step: Step, warning: str) -> Action:
        scripts = f"{task.outputs}/scripts"
        maps = [f for f in uploads(task) if PLATE_MAP_NAME.search(PurePosixPath(f["path"]).stem)
                and f["path"].lower().endswith(MAP_EXTENSIONS)]  # an uploaded plate map serves the other uploads
        maps += [f for f in references(task) if f["path"].lower().endswith(MAP_EXTENSIONS)]
        extra = ["--drop-duplicates"] if drop_duplicates(task) else []
        commands = [
            " ".join(["python", shlex.quote(f"{scripts}/analyze_table.py"),
                      shlex.quote(f"{task.workspace}/{f['path']}"), "--out", shlex.quote(task.outputs),
                      "--name", shlex.quote(f["name"]), "--label", shlex.quote(f["path"])]
                     + [arg for m in maps if m["path"] != f["path"]
                        for arg in ("--reference", shlex.quote(f"{task.workspace}/{m['path']}"))] + extra)
            for f in step.files]
        if len(commands) == 1:
            command = commands[0]
            what = f"{step.files[0]['path']} ({human_size(step.files[0].get('size', 0))})"
        else:  # many files: one command for several, still reporting each one's failure
            command = "status=0; " + " ".join(f"{c} || status=1;" for c in commands) + " exit $status"
            what = f"{len(commands)} files: " + ", ".join(f["path"] for f in step.files)
        thought = (f"Analyse {what}: detect its format and layout, clean it with an audit, profile it, find the "
                   f"blanks and fit each well's growth if it is a plate read over time, look for findings, plot it.")
        return Action(SHELL, thought=(warning + " " + thought).strip(), command=command)

    def report(self, task: Task, step: Step, done: list[tuple[Step, Turn]], warning: str) -> Action:
        failed = self.failures(done)
        args = ["python", shlex.quote(f"{task.outputs}/scripts/make_report.py"), "--out", shlex.quote(task.outputs)]
        for path, reason in failed.items():
            args += ["--failed", shlex.quote(path), shlex.quote(reason)]
        for f in references(task):
            args += ["--reference", shlex.quote(f["path"])]
        if unapplied := unapplied_instructions(task):  # the report says so, as the job's page does
            args += ["--note", shlex.quote(f"Instructions given to this job were not applied: “{unapplied[:500]}”. "
                                           "The offline playbook cannot follow written instructions; it ran its "
                                           "standard analysis.")]
        thought = ("Write a first report now: the next file is large, and if it runs out of time the "
                   "results so far are still described." if step.preliminary
                   else "Write report.md and report.html from the profiles, findings, audits and plots.")
        return Action(SHELL, thought=(warning + " " + thought).strip(), command=" ".join(args))

    def nothing_uploaded(self, task: Task) -> Action:
        refs = references(task)
        if refs:
            message = ("No uploaded file to analyse: the workspace holds only reference files from my_files ("
                       + ", ".join(f["path"] for f in refs[:20]) + "), which are the lab's material, not data.")
        else:
            message = "No input files were found in the workspace, so there was nothing to analyse."
        return Action(FINISH, status="failed", thought="Nothing was uploaded.", message=message)

    def finish(self, task: Task, done: list[tuple[Step, Turn]]) -> Action:
        records = [r for step, turn in done if step.kind == "analyze" and turn.observation
                   for r in parse_results(turn.observation.output)]
        failed = self.failures(done)
        tables = [t for r in records if r.get("status") == "ok" for t in r.get("tables", [])]
        skipped = {r["file"]: r["reason"] for r in records if r.get("status") == "skipped"}
        report_turn = done[-1][1] if done and done[-1][0].kind == "report" else None
        report_ok = bool(report_turn and report_turn.observation and report_turn.observation.exit_code == 0)
        files = uploads(task)
        if not tables:
            why = [f"{f['path']} ({failed.get(f['path']) or skipped.get(f['path']) or 'not analysed'})" for f in files]
            return Action(FINISH, status="failed", thought="No uploaded file holds a table.",
                          message="No table could be read from the uploaded files: " + "; ".join(why) + ".")
        table_lines = []
        summary = parse_results(report_turn.observation.output) if report_ok else []
        for t in (summary[0]["tables"] if summary else []):
            table_lines.append(f"{t['table']}: {t['rows_before']:,} -> {t['rows_after']:,} rows, "
                               f"{t['columns_before']} -> {t['columns_after']} columns")
        analysed = len({r["file"] for r in records if r.get("status") == "ok"})
        parts = [f"Analysed {analysed} of {len(files)} uploaded file(s) into {len(tables)} table(s)."]
        if table_lines:
            parts.append("; ".join(table_lines) + ".")
        if skipped:
            parts.append("Skipped: " + "; ".join(f"{f} ({r})" for f, r in skipped.items()) + ".")
        if failed:
            parts.append("Failed: " + "; ".join(f"{p} ({r})" for p, r in failed.items()) + ".")
        if references(task):
            parts.append(f"{len(references(task))} reference file(s) from my_files listed, not analysed.")
        parts.append("See report.md / report.html (a summary and the findings first); cleaned CSV and Parquet, "
                     "profile JSON with findings, plots and the cleaning audit (and growth_parameters.csv for a "
                     "kinetic plate read) are in one folder per table; scripts/ reproduces everything." if report_ok else "The report could not be written: "
                     + (last_line(report_turn.observation.output) if report_turn and report_turn.observation
                        else "no report step"))
        return Action(FINISH, thought="Done.", message=" ".join(parts), status="succeeded")

    # -- reading observations -----------------------------------------------
    @staticmethod
    def failures(done: list[tuple[Step, Turn]]) -> dict[str, str]:
        """Input path -> reason, for every file whose analysis failed."""
        failed: dict[str, str] = {}
        for step, turn in done:
            if step.kind != "analyze" or turn.observation is None:
                continue
            obs = turn.observation
            by_file = {r.get("file"): r for r in parse_results(obs.output)}
            for f in step.files:
                record = by_file.get(f["path"])
                if record is not None:
                    if record.get("status") == "failed":
                        failed[f["path"]] = record.get("reason") or "the analysis failed"
                elif obs.exit_code != 0 or obs.timed_out:
                    failed[f["path"]] = f"exit code {obs.exit_code}: {last_line(obs.output)}"
        return failed

    def warning(self, last: tuple[Step, Turn] | None) -> str:
        if not last or last[0].kind == "write" or last[1].observation is None:
            return ""
        step, turn = last
        if step.kind == "analyze":
            failed = self.failures([last])
            if failed:
                return ("Warning: " + "; ".join(f"the analysis of {p} failed ({r})" for p, r in failed.items())
                        + ". Continuing with the other files.")
        elif turn.observation.exit_code != 0:
            return f"Warning: the first report failed ({last_line(turn.observation.output)}). Continuing."
        return ""

    @staticmethod
    def instructions_note(task: Task) -> str:
        if not task.instructions or task.instructions.strip() == DEFAULT_INSTRUCTIONS:
            return ""
        if drop_duplicates(task):
            return ("(Instruction followed: rows identical to an earlier row will be removed. Other free-text "
                    "instructions need an LLM model.) ")
        return "(The offline playbook runs its standard analysis; free-text instructions need an LLM model.) "


def min_steps() -> int:
    """Write every script, analyse all files in one step, report, finish."""
    return len(SCRIPT_NAMES) + 3


def unapplied_instructions(task: Task) -> str:
    """The instruction lines the playbook does not follow (those asking to remove duplicates it does)."""
    if not task.instructions or task.instructions.strip() == DEFAULT_INSTRUCTIONS:
        return ""
    return " ".join(line.strip() for line in task.instructions.splitlines()
                    if line.strip() and not DROP_DUPLICATES.search(line))


def drop_duplicates(task: Task) -> bool:
    return bool(task.instructions and DROP_DUPLICATES.search(task.instructions))


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"
