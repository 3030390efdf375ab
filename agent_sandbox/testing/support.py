"""What the suite's tests share: a recorder of events and a RunSpec for the scripted model."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

from agent_sandbox.spec import Limits, RunSpec


class Recorder:
    """Collects events with their arrival time (monotonic)."""

    def __init__(self):
        self.events: list[dict] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        with self.lock:
            self.events.append(event)
            self.arrivals.append(time.monotonic())

    def of_type(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]

    def text(self) -> str:
        return json.dumps(self.events)


def make_spec(tmp_path: Path, actions: list[dict], files: dict[str, bytes] | None = None,
              **kwargs) -> RunSpec:
    """A RunSpec for the scripted model (its actions in AGENT_SCRIPT); `files` become the workspace."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {"data.csv": b"a,b\n1,2\n"}).items():
        (workspace / name).write_bytes(data)
    # 1 GB of disk: each run reserves its disk on the host up front, and several
    # test sessions may share the machine.
    limits = kwargs.pop("limits", None) or Limits(run_timeout=120, command_timeout=60, idle_timeout=60,
                                                  disk_mb=1024)
    env = {"AGENT_SCRIPT": json.dumps(actions), **kwargs.pop("env", {})}
    return RunSpec(job_id=kwargs.pop("job_id", uuid.uuid4().hex[:16]),
                   workspace=workspace, results=tmp_path / "results",
                   model=kwargs.pop("model", "scripted"), env=env, limits=limits, **kwargs)


def shell(command: str, thought: str = "") -> dict:
    return {"kind": "shell", "command": command, "thought": thought}


def python(code: str) -> dict:
    return {"kind": "python", "code": code}
