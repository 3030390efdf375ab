"""Models decide the agent's next action. One Protocol fits a scripted playbook
and a tool-calling LLM alike: the model sees the task and the history of
(action, observation) pairs and returns the next Action.

Models are registered by prefix (MODELS, only models that exist here) and
imported on demand:
    "offline"            the built-in playbook (no network, no key)
    "scripted"           a fixed list of actions from AGENT_SCRIPT (tests)
    "openai:<name>"      any OpenAI-compatible endpoint (through the host's relay)
    "anthropic:<name>"   Anthropic (through the host's relay)
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SHELL = "shell"            # run `command` with /bin/sh in the workspace
PYTHON = "python"          # run `code` with the sandbox's Python
WRITE_FILE = "write_file"  # write `content` to `path` (relative to the outputs folder)
READ_FILE = "read_file"    # read `limit` characters of `path` from `offset`
FINISH = "finish"          # stop; `message` is the summary, `status` succeeded|failed
ACTION_KINDS = (SHELL, PYTHON, WRITE_FILE, READ_FILE, FINISH)
# What the agent is asked when the user gives no instructions.
DEFAULT_INSTRUCTIONS = ("Profile and clean every dataset in the workspace; write cleaned "
                        "tables, plots and a report to the outputs folder.")


@dataclass
class Action:
    kind: str
    thought: str = ""          # why: shown in the log as the step's text
    command: str = ""          # SHELL
    code: str = ""             # PYTHON
    path: str = ""             # WRITE_FILE, READ_FILE
    content: str = ""          # WRITE_FILE
    timeout: float = 0.0       # SHELL, PYTHON: the model's own limit in seconds (0: the run's)
    offset: int = 0            # READ_FILE
    limit: int = 0             # READ_FILE: characters (0: the most allowed)
    message: str = ""          # FINISH
    status: str = "succeeded"  # FINISH
    call_id: str = ""          # tool-call id, for LLMs that need it echoed back
    planned_steps: int = 0     # the model's estimate of the run's steps, shown as "step 3 of 12" (0: unknown)
    free: bool = False         # a step the agent takes on its own (not counted against the model's max_steps)

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Action:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None, 0, 0.0)}


@dataclass
class Observation:
    exit_code: int | None
    output: str                # stdout and stderr, interleaved: the head and the tail when long
    truncated: bool = False    # characters were elided between the head and the tail
    timed_out: bool = False
    duration: float = 0.0
    elided: int = 0            # characters left out of `output`
    total_chars: int = 0       # characters the command printed
    full_output: str = ""      # the file in the sandbox holding all of it ("" when there is none)


@dataclass
class Task:
    """What the model is asked to do, and where."""
    instructions: str
    workspace: str             # absolute path of the inputs (read them here)
    outputs: str               # absolute path where results must be written
    files: list[dict[str, Any]] = field(default_factory=list)  # [{path, size, reference?}] of the workspace
    environment: str = "local"
    max_steps: int = 40        # actions the model may take before the run is stopped
    network: bool = False      # the agent's commands have outbound network
    previous: str = ""         # a follow-up job: what the previous job did (results in /workspace/previous)
    steps_left: int = 0        # the model's steps left, this one included (kept current by the agent)


@dataclass
class Turn:
    action: Action
    observation: Observation | None = None


class Model(Protocol):
    name: str

    def next_action(self, task: Task, history: list[Turn]) -> Action: ...


# prefix -> "module:Class"; the part after "prefix:" is passed as `name`.
MODELS: dict[str, str] = {
    "offline": "agent_sandbox.agent.models.offline:OfflinePlaybook",
    "scripted": "agent_sandbox.agent.models.scripted:ScriptedModel",
    "openai": "agent_sandbox.agent.models.openai:OpenAIModel",
    "anthropic": "agent_sandbox.agent.models.anthropic:AnthropicModel",
}


# What the user is told when an API model is chosen (the CLI prints it, the web start page shows it).
PROVIDER_NOTICE = ("With an AI model, excerpts of your files and the outputs of the commands the agent runs "
                   "are sent to the model's provider ({provider}); the sandbox itself has no network.")
PROVIDERS_SHOWN = {"openai": "OpenAI, or the OpenAI-compatible server set by OPENAI_BASE_URL",
                   "anthropic": "Anthropic, or the server set by ANTHROPIC_BASE_URL"}


def provider_notice(model: str) -> str:
    """The notice for `model` ("" for a model that runs inside the sandbox, e.g. offline)."""
    prefix = model.partition(":")[0]
    return PROVIDER_NOTICE.format(provider=PROVIDERS_SHOWN[prefix]) if prefix in PROVIDERS_SHOWN else ""


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
