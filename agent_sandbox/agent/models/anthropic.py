"""`anthropic:<model>`: the Messages API with tool use, through the host's relay.

The official `anthropic` SDK with its own retries; the host's
ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY never reach the sandbox.
"""

from __future__ import annotations

from typing import Any

import anthropic

from agent_sandbox.agent.models import FINISH
from agent_sandbox.agent.models.llm import (
    LENGTH,
    MAX_RESPONSE_TOKENS,
    REFUSAL,
    TOOLS,
    Entry,
    LLMModel,
    Reply,
    ToolCall,
    model_error,
)
from agent_sandbox.relay.agent import relay_client_options

ANTHROPIC_TOOLS = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                   for t in TOOLS]


def messages(entries: list[Entry]) -> list[dict[str, Any]]:
    """Anthropic's turns alternate: tool results (and any note after them) form one user turn."""
    out: list[dict[str, Any]] = []
    for e in entries:
        if e.role == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": e.text}] if e.text else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.args} for c in e.calls]
            out.append({"role": "assistant", "content": blocks or [{"type": "text", "text": "(no answer)"}]})
            continue
        block = ({"type": "text", "text": e.text} if e.role == "user" else
                 {"type": "tool_result", "tool_use_id": e.call_id, "content": e.text, "is_error": e.error})
        if out and out[-1]["role"] == "user":
            out[-1]["content"].append(block)
        else:
            out.append({"role": "user", "content": [block]})
    return out


class AnthropicModel(LLMModel):
    provider = "anthropic"

    def make_client(self, channel: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(**relay_client_options(channel, self.retries, self.timeout))

    def call(self, system: str, entries: list[Entry], force_finish: bool = False) -> Reply:
        only_finish = {"tool_choice": {"type": "tool", "name": FINISH}} if force_finish else {}
        try:
            response = self.client.messages.create(model=self.name, system=system, messages=messages(entries),
                                                   tools=ANTHROPIC_TOOLS, max_tokens=MAX_RESPONSE_TOKENS,
                                                   **only_finish)
        except anthropic.AnthropicError as exc:
            raise model_error(anthropic, exc, self.name, self.timeout) from None
        text = "\n".join(b.text for b in response.content if b.type == "text" and b.text)
        calls = [ToolCall(b.id, b.name, dict(b.input) if isinstance(b.input, dict) else {"__malformed__": b.input})
                 for b in response.content if b.type == "tool_use"]
        stop = {"refusal": REFUSAL, "max_tokens": LENGTH}.get(response.stop_reason or "", "")
        return Reply(text, calls, stop)
