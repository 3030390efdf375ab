"""What a run needs (RunSpec, Limits) and what it gives back (RunResult).

These are shared by every backend, the CLI and the web app.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from agent_sandbox import settings
from agent_sandbox.settings import MB, setting


@dataclass
class Limits:
    """Limits enforced on one run; each reads its AGENT_SANDBOX_* variable (see `from_env`)."""

    # A field renamed later maps its old name here, so queued jobs' stored limits still load.
    RENAMED: ClassVar[dict[str, str]] = {}

    run_timeout: float = setting("AGENT_SANDBOX_RUN_TIMEOUT", 1800.0, "seconds for the whole run", above=0)
    command_timeout: float = setting("AGENT_SANDBOX_COMMAND_TIMEOUT", 300.0,
                                     "seconds for one command (the run ends with `command_timeout`)", above=0)
    idle_timeout: float = setting("AGENT_SANDBOX_IDLE_TIMEOUT", 600.0,
                                  "seconds without output before the run is stopped", above=0)
    cpu: float = setting("AGENT_SANDBOX_CPU", 1.0, "CPU cores per sandbox", above=0)
    memory_mb: int = setting("AGENT_SANDBOX_MEMORY_MB", 2048, "memory of a sandbox in MB, swap included", above=0)
    max_processes: int = setting("AGENT_SANDBOX_MAX_PROCESSES", 512,
                                 "processes and threads in a sandbox at once, the agent's included", above=0)
    disk_mb: int = setting("AGENT_SANDBOX_DISK_MB", 4096,
                           "writable space of a sandbox in MB, `/outputs` and `/tmp` together "
                           "(reserved on the host's disk while the run lasts)", above=0)
    max_steps: int = setting("AGENT_SANDBOX_MAX_STEPS", 40, "agent steps before it must stop", above=0)
    max_output_chars: int = setting("AGENT_SANDBOX_MAX_OUTPUT_CHARS", 20000,
                                    "output of a command the model gets (its head and its end) and the log "
                                    "streams; all of it stays in a file in the sandbox", above=0)
    preview_bytes: int = setting("AGENT_SANDBOX_PREVIEW_BYTES", 5 * MB, "output files larger than this are "
                                 "flagged `large`: brought back, not previewed inline", shown="`5242880` (5 MB)")
    max_file_bytes: int = setting("AGENT_SANDBOX_MAX_FILE_BYTES", 2048 * MB, "largest single output file brought back",
                                  shown="`2147483648` (2 GB)", above=0)
    max_total_bytes: int = setting("AGENT_SANDBOX_MAX_TOTAL_BYTES", 2048 * MB, "outputs brought back per job "
                                   "(fits `APP_MAX_REQUEST_MB`; raise both together)", shown="`2147483648` (2 GB)", above=0)
    max_files: int = setting("AGENT_SANDBOX_MAX_FILES", 1000, "output files brought back", above=0)
    max_tokens: int = setting("AGENT_SANDBOX_MAX_TOKENS", 1_000_000, "model tokens (in + out) one job may "
                              "spend, counted by the host's relay; 0: no limit", above=-1)
    max_context_chars: int = setting("AGENT_SANDBOX_MAX_CONTEXT_CHARS", 200_000, "characters of conversation "
                                     "an LLM agent sends per call (older outputs compacted; lower it for a "
                                     "model with a small context window: ~3 characters a token)", above=0)
    model_retries: int = setting("AGENT_SANDBOX_MODEL_RETRIES", 4, "retries of a model call that failed for a "
                                 "passing reason (429, 5xx, a lost connection), by the model's SDK", above=-1)
    model_timeout: float = setting("AGENT_SANDBOX_MODEL_TIMEOUT", 300.0, "seconds one model call may take in "
                                   "all, its retries included (at most 600)", above=0)

    @classmethod
    def from_env(cls, **overrides: Any) -> Limits:
        """The limits from AGENT_SANDBOX_* variables; `overrides` win."""
        return settings.load(cls, **overrides)

    @classmethod
    def restore(cls, stored: dict[str, Any], defaults: Limits) -> Limits:
        """Limits stored with a job (maybe by an older version) on top of `defaults`."""
        return settings.restore(cls, stored, defaults)

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
    # An API model's endpoint and key (agent_sandbox.relay.host.ModelAccess). It stays on
    # the host: the relay adds the key to the calls the agent asks for.
    model_access: Any = field(default=None, repr=False)
    previous_summary: str = ""         # follow-up jobs: what the previous job did (the agent reads it from the
    #                                    workspace's followup.SUMMARY_FILE; its results are in /workspace/previous)

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace)
        self.results = Path(self.results)

    @property
    def needs_network(self) -> bool:
        """Model calls go through the host's relay: only the opt-in gives the sandbox a network."""
        return bool(self.network)

    def agent_args(self, workspace: str = "/workspace", outputs: str = "/outputs",
                   enforced: dict[str, str] | None = None) -> list[str]:
        """Arguments for `python -m agent_sandbox.agent` inside the sandbox.

        `enforced` says, per sandbox limit, what enforces it on this backend (or
        "not enforced: why"); the agent reports it in run_started."""
        sandbox = {name: getattr(self.limits, name) for name in ("memory_mb", "max_processes", "disk_mb", "cpu")}
        args = ["--workspace", workspace, "--outputs", outputs, "--model", self.model,
                "--max-steps", str(self.limits.max_steps),
                "--command-timeout", str(self.limits.command_timeout),
                "--max-output-chars", str(self.limits.max_output_chars),
                "--max-context-chars", str(self.limits.max_context_chars),
                "--model-retries", str(self.limits.model_retries),
                "--model-timeout", str(self.limits.model_timeout),
                "--limits", json.dumps(sandbox), "--limits-enforced", json.dumps(enforced or {})]
        # One "--opt=value" word each: text starting with "-" stays text. The previous job's
        # summary is not here (argv has a size limit): the agent reads it from the workspace
        # (agent_sandbox.followup.SUMMARY_FILE).
        if self.instructions:
            args.append(f"--instructions={self.instructions}")
        if self.network:
            args += ["--network"]
        return args


@dataclass
class RunResult:
    """How a run ended. `status` is one of events.RUN_END."""

    status: str
    reason: str = ""
    exit_code: int | None = None
    duration: float = 0.0
    manifest: dict[str, Any] = field(default_factory=lambda: {"files": [], "skipped": []})
    usage: dict[str, int] = field(default_factory=dict)  # model calls and tokens, as the host's relay counted them
    summary: str = ""                  # the agent's closing summary for the user
    sandbox_id: str = ""   # the sandbox's id on its backend, as reported when it was created

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
