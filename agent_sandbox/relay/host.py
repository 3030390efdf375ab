"""The host's end of the model relay: the model key and the network stay here.

An agent with an API model has no network and no key. Its SDK client sends
each HTTP request as a `model_request` line on the agent's stdout (see
agent_sandbox.relay.agent); the backend's monitor hands it to `ModelRelay`,
which checks it, adds the key, forwards it to the configured endpoint only,
and writes the reply as one JSON line to the agent's stdin:

    {"relay": 1, "id": 7, "status": 200, "headers": {...}, "body": "..."}
    {"relay": 1, "id": 7, "error": "connect", "message": "..."}

Only POST to the provider's API path passes (`/chat/completions`,
`/v1/messages`); the model named in the body is replaced by the job's model,
streaming is turned off (so every reply carries its token usage), and the
output-token cap is lowered to what is left of the job's budget. The relay
counts the tokens of every reply (a `usage` event each) and refuses calls once
the job's budget (Limits.max_tokens) is used up: whatever the agent inside
does, a job spends at most its budget plus the input of one call.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from agent_sandbox import events as ev

# One line per relayed call is the usage event; httpx2's own request log would repeat it.
logging.getLogger("httpx2").setLevel(logging.WARNING)

BODY_LIMIT = 4 * 1024 * 1024      # bytes of one relayed request body
MAX_CALL_SECONDS = 600.0          # longest upstream call the agent may ask for
ATTACH_WAIT = 30.0                # seconds a reply waits for the backend to attach the agent's stdin
REQUEST_HEADERS = ("content-type", "accept", "anthropic-version", "anthropic-beta", "user-agent",
                   "idempotency-key", "x-stainless-retry-count")
REPLY_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-should-retry",
                 "request-id", "x-request-id")
BUDGET_MARK = "x-agent-sandbox-budget"   # reply header: this refusal is the token budget


@dataclass(frozen=True)
class Provider:
    paths: tuple[str, ...]              # API paths the agent may call
    default_base_url: str
    key_env: str                        # host variable with the key
    base_url_env: str                   # host variable with the endpoint
    output_cap_fields: tuple[str, ...]  # request fields that cap output tokens

    def auth_headers(self, key: str) -> dict[str, str]:
        if not key:
            return {}   # local servers (Ollama, vLLM) often need none
        return {"x-api-key": key} if self.key_env == "ANTHROPIC_API_KEY" else {"authorization": f"Bearer {key}"}


PROVIDERS = {
    "openai": Provider(("/chat/completions",), "https://api.openai.com/v1", "OPENAI_API_KEY",
                       "OPENAI_BASE_URL", ("max_completion_tokens", "max_tokens")),
    "anthropic": Provider(("/v1/messages",), "https://api.anthropic.com", "ANTHROPIC_API_KEY",
                          "ANTHROPIC_BASE_URL", ("max_tokens",)),
}


@dataclass
class ModelAccess:
    """Where an API model is and the key for it; host side only, never sent to a sandbox."""

    provider: str
    model: str
    base_url: str
    api_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, model: str, environ: dict[str, str]) -> "ModelAccess | None":
        """For "openai:<name>" / "anthropic:<name>": key and endpoint from the host's
        environment (OPENAI_API_KEY, OPENAI_BASE_URL, ...); None for other models."""
        prefix, _, name = model.partition(":")
        provider = PROVIDERS.get(prefix)
        if provider is None:
            return None
        return cls(prefix, name, environ.get(provider.base_url_env) or provider.default_base_url,
                   environ.get(provider.key_env, ""))


def count_tokens(provider: str, body: Any) -> dict[str, int] | None:
    """input/output tokens of one reply, as the provider reports them (None if it does not)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    num = lambda k: usage.get(k) if isinstance(usage.get(k), int) else 0  # noqa: E731
    if provider == "anthropic":
        return {"input_tokens": num("input_tokens") + num("cache_creation_input_tokens")
                + num("cache_read_input_tokens"), "output_tokens": num("output_tokens")}
    return {"input_tokens": num("prompt_tokens"), "output_tokens": num("completion_tokens")}


_http = None
_http_lock = threading.Lock()


def http_client():
    """One connection pool for every relay in this process (many jobs share it)."""
    global _http
    with _http_lock:
        if _http is None:
            import httpx2
            _http = httpx2.Client(follow_redirects=False, limits=httpx2.Limits(max_connections=256,
                                                                              max_keepalive_connections=64))
        return _http


class ModelRelay:
    """Relays one job's model calls; counts its tokens against its budget."""

    def __init__(self, access: ModelAccess, max_tokens: int, emit: Callable[[str, dict], None]):
        self.access = access
        self.provider = PROVIDERS[access.provider]
        self.max_tokens = max_tokens
        self.emit = emit                 # (event type, data): the monitor's host events
        self.usage = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        self.refused = ""                # why calls were refused (the budget), once they were
        self._write: Callable[[str], None] | None = None
        self._attached = threading.Event()
        self._lock = threading.Lock()
        self._closed = False

    # -- wiring -------------------------------------------------------------
    def attach(self, write_line: Callable[[str], None]) -> None:
        """The backend's way to write one line to the agent's stdin."""
        self._write = write_line
        self._attached.set()

    def close(self) -> None:
        """The sandbox is gone: replies and usage events of calls still running are dropped."""
        with self._lock:
            self._closed = True

    def handle(self, event: dict[str, Any]) -> None:
        """A `model_request` from the agent (called from a stream reader: never blocks)."""
        threading.Thread(target=self._serve, args=(event,), daemon=True, name="model-relay").start()

    # -- one call -----------------------------------------------------------
    def _serve(self, event: dict[str, Any]) -> None:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        call_id = data.get("id")
        if not isinstance(call_id, int):
            return
        try:
            reply = self._call(data, event.get("step"))
        except Exception as exc:  # never let one call take the run down; the agent gets an error
            reply = {"error": "connect", "message": f"the relay failed: {type(exc).__name__}"}
        self._attached.wait(ATTACH_WAIT)   # a backend attaches right after the start; never block forever
        with self._lock:
            if self._closed or self._write is None:
                return
            try:
                self._write(json.dumps({"relay": 1, "id": call_id, **reply}) + "\n")
            except (OSError, ValueError):
                pass  # the agent is gone

    def _call(self, data: dict[str, Any], step: Any) -> dict[str, Any]:
        path, body = data.get("path"), data.get("body")
        if data.get("method") != "POST" or path not in self.provider.paths:
            return refusal(403, f"the relay only forwards POST {', '.join(self.provider.paths)}")
        if not isinstance(body, dict):
            return refusal(400, "the relay needs a JSON object body")
        with self._lock:
            if self.refused or (self.max_tokens and self.usage["total_tokens"] >= self.max_tokens):
                self.refused = self.refused or (f"token budget of {self.max_tokens:,} tokens used up "
                                                f"({self.usage['total_tokens']:,} used)")
                return refusal(402, self.refused, budget=True)
            remaining = self.max_tokens - self.usage["total_tokens"] if self.max_tokens else 0
        body = dict(body, model=self.access.model)
        body.pop("stream", None)          # every reply must carry its usage
        body.pop("stream_options", None)
        for name in self.provider.output_cap_fields:
            if remaining and isinstance(body.get(name), int):
                body[name] = max(1, min(body[name], remaining))
        content = json.dumps(body).encode()
        if len(content) > BODY_LIMIT:
            return refusal(413, f"request body over the relay's limit of {BODY_LIMIT} bytes")
        headers = {k.lower(): str(v) for k, v in (data.get("headers") or {}).items()
                   if isinstance(k, str) and k.lower() in REQUEST_HEADERS}
        headers.update(self.provider.auth_headers(self.access.api_key))
        timeout = data.get("timeout")
        timeout = min(float(timeout), MAX_CALL_SECONDS) if isinstance(timeout, (int, float)) and timeout > 0 else 120.0
        url = self.access.base_url.rstrip("/") + path
        import httpx2
        try:
            response = http_client().post(url, content=content, headers=headers, timeout=timeout)
        except httpx2.TimeoutException:
            return {"error": "timeout", "message": f"the model endpoint did not answer within {timeout:g}s"}
        except httpx2.HTTPError as exc:
            return {"error": "connect", "message": f"could not reach the model endpoint {endpoint(url)}: "
                                                   f"{one_line(exc) or type(exc).__name__}"}
        text = response.text
        if response.is_success:
            self._count(text, len(content), step)
        else:
            self.emit(ev.WARNING, {"message": f"the model endpoint answered {response.status_code}: "
                                              f"{error_message(text)}"})
        reply_headers = {k: v for k, v in response.headers.items() if k.lower() in REPLY_HEADERS}
        return {"status": response.status_code, "headers": reply_headers, "body": text}

    def _count(self, text: str, sent: int, step: Any) -> None:
        try:
            tokens = count_tokens(self.access.provider, json.loads(text))
        except ValueError:
            tokens = None
        estimated = tokens is None
        if estimated:   # a server that reports no usage still spends the budget: ~4 bytes a token
            tokens = {"input_tokens": sent // 4, "output_tokens": len(text.encode()) // 4}
        with self._lock:
            if self._closed:
                return
            u = self.usage
            u["calls"] += 1
            u["input_tokens"] += tokens["input_tokens"]
            u["output_tokens"] += tokens["output_tokens"]
            u["total_tokens"] = u["input_tokens"] + u["output_tokens"]
            data = {**tokens, "total_tokens": tokens["input_tokens"] + tokens["output_tokens"],
                    "job_tokens": u["total_tokens"], "max_tokens": self.max_tokens, "calls": u["calls"],
                    "model": f"{self.access.provider}:{self.access.model}"}
            if estimated:
                data["estimated"] = True
            if isinstance(step, int):
                data["step"] = step
            self.emit(ev.USAGE, data)


def refusal(status: int, message: str, budget: bool = False) -> dict[str, Any]:
    """An answer of the relay itself, in the provider's error shape; the SDK must not retry it."""
    headers = {"content-type": "application/json", "x-should-retry": "false"}
    if budget:
        headers[BUDGET_MARK] = "1"
    body = {"type": "error", "error": {"type": "relay_refused", "message": message}}
    return {"status": status, "headers": headers, "body": json.dumps(body)}


def error_message(text: str) -> str:
    try:
        body = json.loads(text)
        error = body.get("error", body) if isinstance(body, dict) else body
        message = error.get("message") if isinstance(error, dict) else error
        return one_line(message or text)
    except ValueError:
        return one_line(text) or "no message"


def one_line(value: Any, limit: int = 300) -> str:
    return " ".join(str(value).split())[:limit]


def endpoint(url: str) -> str:
    """scheme://host[:port] of a URL: enough to say where, never a path or query."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
