"""What each model on offer does with a job's instructions, in the words the pages use.

The offline playbook cannot follow free text: it runs its standard analysis and
honours a few options, offered as checkboxes (OFFLINE_OPTIONS), each standing
for one instruction line it recognises. A job says whether its instructions
were applied (`instructions_applied`), and only models that follow instructions
are offered to continue a job.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_sandbox.agent import models

FOLLOWS_INSTRUCTIONS = ("openai", "anthropic")   # model prefixes that read free-text instructions
MODEL_LABELS = {"offline": "offline analysis (no AI service)", "scripted": "scripted (tests)"}


@dataclass(frozen=True)
class Option:
    label: str          # the checkbox
    instruction: str    # the instruction line the offline playbook recognises


OFFLINE_OPTIONS = {
    "drop_duplicates": Option("Remove rows identical to an earlier row (by default they are kept and reported)",
                              "Remove duplicate rows."),
}


class UnknownOption(ValueError):
    pass


def follows_instructions(model: str) -> bool:
    return model.partition(":")[0] in FOLLOWS_INSTRUCTIONS


def with_options(instructions: str, options: list[str]) -> str:
    """The job's instructions: its text, then one line per chosen option."""
    unknown = [o for o in options if o not in OFFLINE_OPTIONS]
    if unknown:
        raise UnknownOption(f"unknown option {unknown[0]!r}; the options are {', '.join(OFFLINE_OPTIONS)}")
    lines = [instructions.strip()] if instructions.strip() else []
    lines += [OFFLINE_OPTIONS[o].instruction for o in dict.fromkeys(options)]
    return "\n".join(lines)


def chosen_options(instructions: str) -> list[str]:
    """The labels of the options the instructions hold (their lines)."""
    lines = {line.strip() for line in instructions.splitlines()}
    return [o.label for o in OFFLINE_OPTIONS.values() if o.instruction in lines]


def free_text(instructions: str) -> str:
    """The instructions less the options' lines: what only a model that follows instructions can do."""
    options = {o.instruction for o in OFFLINE_OPTIONS.values()}
    return "\n".join(line for line in instructions.splitlines() if line.strip() and line.strip() not in options)


def instructions_applied(model: str, instructions: str) -> bool:
    """False when the job was given free text its model cannot follow (the offline playbook)."""
    return follows_instructions(model) or not free_text(instructions or "")


def provider_notice(model: str) -> str | None:
    """What leaves the server when `model` runs a job (None: nothing does); the agent's own words,
    which the CLI prints too."""
    return models.provider_notice(model) or None
