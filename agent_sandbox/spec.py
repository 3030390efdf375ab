"""What a run needs (RunSpec, Limits) and what it gives back (RunResult).

These are shared by every backend, the CLI and the web app.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


@dataclass
class Limits:
    """Limits enforced on one run. Defaults come from AGENT_SANDBOX_* variables."""

    run_timeout: float = 1800.0        # seconds for the whole run
    command_timeout: float = 300.0     # seconds for one command the agent runs
    idle_timeout: float = 600.0        # seconds without any output before the run is stopped
    cpu: float = 1.0                   # CPU cores (where the backend can enforce it)
    memory_mb: int = 2048              # memory of the whole sandbox, in MB
    max_processes: int = 512           # processes (and threads) in the sandbox at once, the agent's included
    disk_mb: int = 4096                # writable space of the sandbox (/outputs and /tmp together), in MB
    max_steps: int = 40                # agent steps before it must stop
    max_output_chars: int = 20000      # captured output per command kept for the model and log
    preview_bytes: int = 5 * MB        # output files larger than this are flagged "large" (no inline preview)
    max_file_bytes: int = 2048 * MB    # one output file larger than this is not brought back
    max_total_bytes: int = 2048 * MB   # per job: outputs past this total are not brought back (fits the upload limit)
    max_files: int = 1000              # outputs past this count are not brought back
    max_tokens: int = 1_000_000        # model tokens (in + out) one job may spend; counted by the host; 0 = no limit
    max_context_chars: int = 200_000   # characters of conversation an LLM agent sends per call (older outputs compacted)

    @classmethod
    def from_env(cls, **overrides: Any) -> "Limits":
        limits = cls()
        for name, value in asdict(limits).items():
            env = os.environ.get(f"AGENT_SANDBOX_{name.upper()}")
            if env not in (None, ""):
                setattr(limits, name, type(value)(float(env)) if isinstance(value, int) else float(env))
        for name, value in overrides.items():
            if value is not None:
                setattr(limits, name, value)
        return limits

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSpec:
    """One run of the agent: the inputs, the model, the limits, where results go."""

    job_id: str
    workspace: Path                    # prepared folder; becomes /workspace (never modified)
    results: Path                      # collected outputs and manifest.json land here
    instructions: str = ""
    model: str = "offline"             # "offline" | "openai:<name>" | "anthropic:<name>" | "scripted:<file>"
    secrets: dict[str, str] = field(default_factory=dict)  # other secrets for the agent; never logged (not model keys)
    env: dict[str, str] = field(default_factory=dict)      # non-secret settings for the agent
    limits: Limits = field(default_factory=Limits)
    network: bool = False              # outbound network for the agent's commands (opt-in; never host or private addresses)
    # An API model's endpoint and key (agent_sandbox.relay.ModelAccess). It stays on
    # the host: the relay adds the key to the calls the agent asks for.
    model_access: Any = field(default=None, repr=False)
    previous_summary: str = ""         # follow-up jobs: what the previous job did (its results are in /workspace/previous)

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace)
        self.results = Path(self.results)

    @property
    def needs_network(self) -> bool:
        """Model calls go through the host's relay: only the opt-in gives the sandbox a network."""
        return bool(self.network)

    def agent_args(self, workspace: str = "/workspace", outputs: str = "/outputs",
                   enforced: dict[str, str] | None = None) -> list[str]:
        """Arguments for `python -m agent_sandbox.coding_agent` inside the sandbox.

        `enforced` says, per sandbox limit, what enforces it on this backend (or
        "not enforced: why"); the agent reports it in run_started."""
        sandbox = {name: getattr(self.limits, name) for name in ("memory_mb", "max_processes", "disk_mb", "cpu")}
        args = ["--workspace", workspace, "--outputs", outputs, "--model", self.model,
                "--max-steps", str(self.limits.max_steps),
                "--command-timeout", str(self.limits.command_timeout),
                "--max-output-chars", str(self.limits.max_output_chars),
                "--max-context-chars", str(self.limits.max_context_chars),
                "--limits", json.dumps(sandbox), "--limits-enforced", json.dumps(enforced or {})]
        # One "--opt=value" word each: text starting with "-" stays text.
        if self.instructions:
            args.append(f"--instructions={self.instructions}")
        if self.previous_summary:
            args.append(f"--previous-summary={self.previous_summary}")
        if self.network:
            args += ["--network"]
        return args


@dataclass
class RunResult:
    """How a run ended. `status` is one of events.FINAL_STATUSES."""

    status: str
    reason: str = ""
    exit_code: int | None = None
    duration: float = 0.0
    manifest: dict[str, Any] = field(default_factory=lambda: {"files": [], "skipped": []})
    usage: dict[str, int] = field(default_factory=dict)  # model calls and tokens, as the host's relay counted them
    summary: str = ""                  # the agent's closing summary for the user

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
