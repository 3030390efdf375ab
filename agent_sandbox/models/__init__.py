"""Models decide the agent's next action. One Protocol fits a scripted playbook
and a tool-calling LLM alike: the model sees the task and the history of
(action, observation) pairs and returns the next Action.

Models are registered by prefix (MODELS, only models that exist here) and
imported on demand:
    "offline"            the built-in playbook (no network, no key)
    "scripted"           a fixed list of actions from AGENT_SCRIPT (tests)
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SHELL = "shell"            # run `command` with /bin/sh in the workspace
PYTHON = "python"          # run `code` with the sandbox's Python
WRITE_FILE = "write_file"  # write `content` to `path` (relative to the outputs folder)
FINISH = "finish"          # stop; `message` is the summary, `status` succeeded|failed
ACTION_KINDS = (SHELL, PYTHON, WRITE_FILE, FINISH)
# What the agent is asked when the user gives no instructions.
DEFAULT_INSTRUCTIONS = ("Profile and clean every dataset in the workspace; write cleaned "
                        "tables, plots and a report to the outputs folder.")


@dataclass
class Action:
    kind: str
    thought: str = ""          # why: shown in the log as the step's text
    command: str = ""          # SHELL
    code: str = ""             # PYTHON
    path: str = ""             # WRITE_FILE
    content: str = ""          # WRITE_FILE
    message: str = ""          # FINISH
    status: str = "succeeded"  # FINISH
    call_id: str = ""          # tool-call id, for LLMs that need it echoed back
    planned_steps: int = 0     # the model's estimate of the run's steps, shown as "step 3 of 12" (0: unknown)

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Action":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


@dataclass
class Observation:
    exit_code: int | None
    output: str                # stdout and stderr, interleaved, capped
    truncated: bool = False
    timed_out: bool = False
    duration: float = 0.0


@dataclass
class Task:
    """What the model is asked to do, and where."""
    instructions: str
    workspace: str             # absolute path of the inputs (read them here)
    outputs: str               # absolute path where results must be written
    files: list[dict[str, Any]] = field(default_factory=list)  # [{path, size, reference?}] of the workspace
    environment: str = "local"
    max_steps: int = 40        # actions the model may take before the run is stopped


@dataclass
class Turn:
    action: Action
    observation: Observation | None = None


class Model(Protocol):
    name: str

    def next_action(self, task: Task, history: list[Turn]) -> Action: ...


# prefix -> "module:Class"; the part after "prefix:" is passed as `name`.
MODELS: dict[str, str] = {
    "offline": "agent_sandbox.models.offline:OfflinePlaybook",
    "scripted": "agent_sandbox.models.scripted:ScriptedModel",
}


# What an API model needs from the host's environment: its key goes in as a
# secret (never logged, hidden from commands), its endpoint as a plain setting.
MODEL_SECRETS = {"openai": ("OPENAI_API_KEY",), "anthropic": ("ANTHROPIC_API_KEY",)}
MODEL_SETTINGS = {"openai": ("OPENAI_BASE_URL",), "anthropic": ("ANTHROPIC_BASE_URL",)}


def model_environment(model: str, environ: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(secrets, settings) for `model` taken from `environ`."""
    prefix = model.partition(":")[0]
    pick = lambda names: {k: environ[k] for k in names if environ.get(k)}  # noqa: E731
    return pick(MODEL_SECRETS.get(prefix, ())), pick(MODEL_SETTINGS.get(prefix, ()))


class UnknownModel(ValueError):
    pass


def check_model(spec: str) -> None:
    """Raise UnknownModel unless `spec` names a registered model."""
    if spec.partition(":")[0] not in MODELS:
        raise UnknownModel(f"unknown model {spec!r}; use one of {', '.join(MODELS)}")


def get_model(spec: str) -> Model:
    check_model(spec)
    prefix, _, name = spec.partition(":")
    module_name, class_name = MODELS[prefix].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # its SDK is an optional install
        raise UnknownModel(f"model {spec!r} needs the Python package {exc.name!r}, which is not "
                           f"installed here (pip install {exc.name})") from None
    return getattr(module, class_name)(name)
