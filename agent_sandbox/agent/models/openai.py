"""`openai:<model>`: Chat Completions with tool calling, through the host's relay.

The official `openai` SDK with its own retries; any OpenAI-compatible server
(vLLM, Ollama, llama.cpp's server, OpenRouter) works: the host's
OPENAI_BASE_URL says where, and it never reaches the sandbox.
"""

from __future__ import annotations

import json
from typing import Any

import openai

from agent_sandbox.agent.models import FINISH
from agent_sandbox.agent.models.llm import (
    LENGTH,
    MAX_RESPONSE_TOKENS,
    REFUSAL,
    TOOLS,
    Entry,
    LLMModel,
    ModelError,
    Reply,
    ToolCall,
    model_error,
)
from agent_sandbox.relay.agent import relay_client_options

OPENAI_TOOLS = [{"type": "function", "function": tool} for tool in TOOLS]


def messages(system: str, entries: list[Entry]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for e in entries:
        if e.role == "user":
            out.append({"role": "user", "content": e.text})
        elif e.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": e.text or (None if e.calls else "(no answer)")}
            if e.calls:
                msg["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.raw or json.dumps(c.args)}}
                                     for c in e.calls]
            out.append(msg)
        else:
            out.append({"role": "tool", "tool_call_id": e.call_id, "content": e.text})
    return out


def tool_calls(message: Any) -> list[ToolCall]:
    calls = []
    for n, call in enumerate(message.tool_calls or []):
        fn = getattr(call, "function", None)
        raw = (fn.arguments if fn is not None else "") or ""
        try:
            args = json.loads(raw) if raw.strip() else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):  # parse_call reports it to the model as an error
            args = {"__malformed__": raw}
        calls.append(ToolCall(call.id or f"call_{n}", fn.name if fn is not None else "", args, raw))
    return calls


class OpenAIModel(LLMModel):
    provider = "openai"

    def make_client(self, channel: Any) -> openai.OpenAI:
        return openai.OpenAI(**relay_client_options(channel, self.retries, self.timeout))

    def call(self, system: str, entries: list[Entry], force_finish: bool = False) -> Reply:
        only_finish = {"tool_choice": {"type": "function", "function": {"name": FINISH}}} if force_finish else {}
        try:
            response = self.client.chat.completions.create(model=self.name, messages=messages(system, entries),
                                                           tools=OPENAI_TOOLS, **only_finish,
                                                           max_completion_tokens=MAX_RESPONSE_TOKENS)
        except openai.OpenAIError as exc:
            raise model_error(openai, exc, self.name, self.timeout) from None
        if not response.choices:
            raise ModelError("the model endpoint returned no answer")
        choice = response.choices[0]
        refusal = getattr(choice.message, "refusal", None) or ""
        stop = REFUSAL if refusal or choice.finish_reason == "content_filter" else \
            LENGTH if choice.finish_reason == "length" else ""
        return Reply(choice.message.content or "", tool_calls(choice.message), stop, refusal)
