"""A deterministic model for tests: plays a fixed list of actions.

The actions come from the AGENT_SCRIPT environment variable as a JSON list of
Action dicts, so the same script drives the agent in every backend. After the
last action it finishes.
"""

from __future__ import annotations

import json
import os

from agent_sandbox.agent.models import FINISH, Action, Task, Turn


class ScriptedModel:
    def __init__(self, name: str = ""):
        self.name = "scripted"
        raw = os.environ.get("AGENT_SCRIPT", "[]")
        self.actions = [Action.from_dict(a) for a in json.loads(raw)]

    def next_action(self, task: Task, history: list[Turn]) -> Action:
        if len(history) < len(self.actions):
            return self.actions[len(history)]
        return Action(kind=FINISH, message="script finished")
