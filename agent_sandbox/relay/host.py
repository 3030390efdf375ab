"""The host's end of the model relay: the model key and the network stay here.

An agent with an API model has no network and no key. Its SDK client sends
each HTTP request as `model_request` frames on the agent's stdout (see
agent_sandbox.relay.agent and .wire); the backend's monitor hands them to
`ModelRelay`, which checks the request, adds the key, forwards it to the
configured endpoint only, and writes the reply as frames to the agent's stdin.

What a request may do, whatever the agent inside was made to send:
- only POST to the provider's API path passes (`/chat/completions`,
  `/v1/messages`), with the job's model, streaming off (every reply carries
  its token usage) and only the body fields the agent needs (`n` and anything
  else not listed in `Provider.body_fields` are dropped);
- one call at a time per job: a request that arrives while one is in flight
  is refused at once (no thread, no upstream call);
- every call carries an output-token cap: the agent's, else MAX_OUTPUT_TOKENS,
  lowered to what is left of the job's budget (Limits.max_tokens) and reserved
  before the call is forwarded; once nothing is left, calls are refused. So a
  job spends at most its budget plus the input of one call;
- a call ends within `call_timeout` (AGENT_SANDBOX_MODEL_TIMEOUT), answered 408
  (not retried) once it has run out;
- the key and any credential in the endpoint URL are redacted from every reply
  body and from every event; an error body is cut to one line of its message.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from agent_sandbox import events as ev
from agent_sandbox.relay import wire

# One line per relayed call is the usage event; httpx2's own request log would repeat it.
logging.getLogger("httpx2").setLevel(logging.WARNING)

MAX_OUTPUT_TOKENS = 8192          # the output cap of a call that names none
MAX_CALL_SECONDS = 600.0          # longest upstream call, whatever the settings say
ATTACH_WAIT = 30.0                # seconds a reply waits for the backend to attach the agent's stdin
MESSAGE_CHARS = 300               # characters of an upstream error message kept
REQUEST_HEADERS = ("content-type", "accept", "anthropic-version", "anthropic-beta", "user-agent",
                   "idempotency-key", "x-stainless-retry-count")
REPLY_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-should-retry",
                 "request-id", "x-request-id")
BUDGET_MARK = "x-agent-sandbox-budget"   # reply header: this refusal is the token budget
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Provider:
    paths: tuple[str, ...]              # API paths the agent may call
    default_base_url: str
    key_env: str                        # host variable with the key
    base_url_env: str                   # host variable with the endpoint
    body_fields: frozenset[str]         # request fields forwarded; any other is dropped

    def auth_headers(self, key: str) -> dict[str, str]:
        if not key:
            return {}   # local servers (Ollama, vLLM) often need none
        return {"x-api-key": key} if self.key_env == "ANTHROPIC_API_KEY" else {"authorization": f"Bearer {key}"}

    def cap_field(self, base_url: str) -> str:
        """The request field that caps output tokens at this endpoint. OpenAI's own API (and
        Azure's) wants max_completion_tokens (its reasoning models refuse max_tokens); other
        OpenAI-compatible servers (vLLM, llama.cpp, Ollama) read max_tokens."""
        if self.key_env != "OPENAI_API_KEY":
            return "max_tokens"
        host = (urlsplit(base_url).hostname or "").lower()
        return "max_completion_tokens" if host == "api.openai.com" or host.endswith(".openai.azure.com") \
            else "max_tokens"


PROVIDERS = {
    "openai": Provider(("/chat/completions",), "https://api.openai.com/v1", "OPENAI_API_KEY", "OPENAI_BASE_URL",
                       frozenset({"model", "messages", "tools", "tool_choice", "parallel_tool_calls", "temperature",
                                  "top_p", "stop", "seed", "reasoning_effort"})),
    "anthropic": Provider(("/v1/messages",), "https://api.anthropic.com", "ANTHROPIC_API_KEY",
                          "ANTHROPIC_BASE_URL",
                          frozenset({"model", "system", "messages", "tools", "tool_choice", "temperature",
                                     "top_p", "top_k", "stop_sequences"})),
}
CAP_FIELDS = ("max_completion_tokens", "max_tokens")


@dataclass
class ModelAccess:
    """Where an API model is and the key for it; host side only, never sent to a sandbox."""

    provider: str
    model: str
    base_url: str
    api_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, model: str, environ: dict[str, str]) -> ModelAccess | None:
        """For "openai:<name>" / "anthropic:<name>": key and endpoint from the host's
        environment (OPENAI_API_KEY, OPENAI_BASE_URL, ...); None for other models."""
        prefix, _, name = model.partition(":")
        provider = PROVIDERS.get(prefix)
        if provider is None:
            return None
        return cls(prefix, name, (environ.get(provider.base_url_env) or "").strip() or provider.default_base_url,
                   environ.get(provider.key_env, "").strip())

    def problem(self) -> str:
        """Why calls cannot be made (a missing key, a malformed endpoint), in one line; "" if they can."""
        provider = PROVIDERS[self.provider]
        where = f"{provider.base_url_env}={Redactor(self.secrets())(self.base_url)[:200]!r}"
        try:
            url = urlsplit(self.base_url)
            url.port   # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            return f"{provider.base_url_env} is not a valid URL: {exc}"
        if url.scheme not in ("http", "https") or not url.hostname or any(c.isspace() for c in self.base_url):
            return f"{where} is not a valid endpoint: expected http(s)://host[:port][/path]"
        if url.fragment:
            return f"{where} is not a valid endpoint: it has a #fragment"
        if self.api_key and (not self.api_key.isprintable() or any(c.isspace() for c in self.api_key)):
            return f"{provider.key_env} is not a valid key: it holds spaces or control characters"
        if not self.api_key and self.base_url.rstrip("/") == provider.default_base_url:
            return f"{provider.key_env} is not set: {self.provider} needs a key (or set {provider.base_url_env} " \
                   "to a server that needs none)"
        return ""

    def call_url(self) -> str:
        """The endpoint to call: with a key, its header is the credential (credentials in the URL
        would replace it with Basic auth); without one, the URL's own credentials stay."""
        if not self.api_key or "@" not in self.base_url:
            return self.base_url
        parts = urlsplit(self.base_url)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()

    def secrets(self) -> list[str]:
        """Every text that would give the key or the endpoint's credentials away."""
        found = [self.api_key]
        try:
            url = urlsplit(self.base_url)
            found += [url.username or "", url.password or ""]
            found += [url.netloc.rpartition("@")[0]] if "@" in url.netloc else []
            found += [value for _, value in parse_qsl(url.query)]
        except ValueError:
            pass
        found += [unquote(s) for s in found]
        if len(found) > 2 and (found[1] or found[2]):   # as the Basic auth header carries them
            found.append(base64.b64encode(f"{unquote(found[1])}:{unquote(found[2])}".encode()).decode())
        return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


class Redactor:
    """Replaces each secret (and its JSON-escaped form) with [redacted]."""

    def __init__(self, secrets: list[str]):
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1])}
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        """`value` (an event's data) with every string redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return value


def count_tokens(provider: str, body: Any) -> dict[str, int] | None:
    """input/output tokens of one reply, as the provider reports them (None if it does not)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None

    def num(k: str) -> int:
        n = usage.get(k)
        return n if isinstance(n, int) and n > 0 else 0

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
    """Relays one job's model calls, one at a time; counts its tokens against its budget."""

    def __init__(self, access: ModelAccess, max_tokens: int, emit: Callable[[str, dict], None],
                 call_timeout: float = MAX_CALL_SECONDS):
        self.access = access
        self.provider = PROVIDERS[access.provider]
        self.max_tokens = max_tokens
        self.call_timeout = min(call_timeout, MAX_CALL_SECONDS)
        self.redact = Redactor(access.secrets())
        self._emit = emit                # (event type, data): the monitor's host events
        self.usage = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        self.reserved = 0                # output tokens of the call in flight, counted before it is made
        self.refused = ""                # why calls were refused (the budget), once they were
        self.turned_away = 0             # requests refused because one was in flight
        self.in_flight = False
        self._frames = wire.Assembler()
        self._write: Callable[[str], object] | None = None
        self._attached = threading.Event()
        self._lock = threading.Lock()
        self._closed = False

    # -- wiring -------------------------------------------------------------
    def attach(self, write_line: Callable[[str], object]) -> None:
        """The backend's way to write one line to the agent's stdin."""
        self._write = write_line
        self._attached.set()

    def close(self) -> None:
        """The sandbox is gone: replies and usage events of calls still running are dropped."""
        with self._lock:
            self._closed = True

    def emit(self, type: str, data: dict[str, Any]) -> None:
        self._emit(type, self.redact.data(data))

    def handle(self, event: dict[str, Any]) -> None:
        """A `model_request` frame from the agent (called from a stream reader: never waits for a call)."""
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        try:
            done = self._frames.add(data)
        except wire.FrameError as exc:
            if isinstance(data.get("id"), int):
                self._reply(data["id"], refusal(400, str(exc)))
            return
        if done is None:
            return
        call_id, request = done
        with self._lock:
            busy, self.in_flight = self.in_flight, True
            if busy:
                self.turned_away += 1
        if busy:   # answered here and now: a flood of requests costs no thread and no upstream call
            if self.turned_away == 1:
                self.emit(ev.WARNING, {"message": "the agent sent a model request while one was in flight: "
                                                  "refused (one call at a time)"})
            self._reply(call_id, refusal(429, "one model call at a time: another is in flight"))
            return
        threading.Thread(target=self._serve, args=(call_id, request, event.get("step")), daemon=True,
                         name="model-relay").start()

    # -- one call -----------------------------------------------------------
    def _serve(self, call_id: int, request: dict[str, Any], step: Any) -> None:
        try:
            reply = self._call(request, step)
        except Exception as exc:  # never let one call take the run down; the agent gets an error
            reply = {"error": "connect", "message": f"the relay failed: {type(exc).__name__}"}
        finally:
            with self._lock:
                self.in_flight = False
        self._attached.wait(ATTACH_WAIT)   # a backend attaches right after the start; never block forever
        self._reply(call_id, reply)

    def _reply(self, call_id: int, reply: dict[str, Any]) -> None:
        with self._lock:
            if self._closed or self._write is None:
                return
            try:
                for line in wire.reply_lines(call_id, reply):
                    self._write(line + "\n")
            except (OSError, ValueError):
                pass  # the agent is gone

    def _call(self, request: dict[str, Any], step: Any) -> dict[str, Any]:
        path, body = request.get("path"), request.get("body")
        if request.get("method") != "POST" or path not in self.provider.paths:
            return refusal(403, f"the relay only forwards POST {', '.join(self.provider.paths)}")
        if not isinstance(body, dict):
            return refusal(400, "the relay needs a JSON object body")
        cap = self._reserve(body)
        if not cap:
            return refusal(402, self.refused, budget=True)
        try:
            return self._forward(path, self.body(body, cap), request, step)
        finally:
            with self._lock:
                self.reserved -= cap

    def _reserve(self, body: dict[str, Any]) -> int:
        """The call's output cap, reserved from the budget; 0 (and `refused` says why) when none is left."""
        asked = next((body[f] for f in CAP_FIELDS if isinstance(body.get(f), int) and body[f] > 0), MAX_OUTPUT_TOKENS)
        cap = min(asked, MAX_OUTPUT_TOKENS * 8)
        with self._lock:
            if self.max_tokens:
                left = self.max_tokens - self.usage["total_tokens"] - self.reserved
                if self.refused or left <= 0:
                    self.refused = self.refused or (f"token budget of {self.max_tokens:,} tokens used up "
                                                    f"({self.usage['total_tokens']:,} used)")
                    return 0
                cap = min(cap, left)
            self.reserved += cap
            return cap

    def body(self, body: dict[str, Any], cap: int) -> dict[str, Any]:
        """What goes upstream: the allowed fields, the job's model, the output cap."""
        kept = {k: v for k, v in body.items() if k in self.provider.body_fields}
        kept["model"] = self.access.model
        kept[self.provider.cap_field(self.access.base_url)] = cap
        return kept

    def _forward(self, path: str, body: dict[str, Any], request: dict[str, Any], step: Any) -> dict[str, Any]:
        import httpx2
        content = json.dumps(body).encode()
        headers = {k.lower(): str(v) for k, v in (request.get("headers") or {}).items()
                   if isinstance(k, str) and k.lower() in REQUEST_HEADERS}
        headers.update(self.provider.auth_headers(self.access.api_key))
        asked = request.get("timeout")
        timeout = min(float(asked), self.call_timeout) if isinstance(asked, (int, float)) and asked > 0 \
            else self.call_timeout
        url = self.access.call_url().rstrip("/") + path
        try:
            status, reply_headers, text = fetch(url, content, headers, timeout)
        except TimeoutError:
            return refusal(408, f"the model endpoint did not answer within {timeout:g}s")
        except httpx2.HTTPError as exc:
            return {"error": "connect", "message": f"could not reach the model endpoint {endpoint(url)}: "
                                                   f"{self.redact(one_line(exc)) or type(exc).__name__}"}
        if 200 <= status < 300:
            self._count(text, len(content), step)
            text = self.redact(text)
        else:
            text = self.error_body(text)
            message = json.loads(text)["error"]["message"]
            self.emit(ev.WARNING, {"message": f"the model endpoint answered {status}: {message}"})
        kept = {k: v for k, v in reply_headers.items() if k.lower() in REPLY_HEADERS}
        return {"status": status, "headers": kept, "body": text}

    def error_body(self, text: str) -> str:
        """An upstream error as the provider's error shape, one redacted line of its message (and its
        type and code, when they are short words): never the rest of what the endpoint sent."""
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = None
        error = body.get("error", body) if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        message = self.redact(one_line(error.get("message") or (text if body is None else "") or "no message",
                                       MESSAGE_CHARS * 2))[:MESSAGE_CHARS]
        word = lambda v: v if isinstance(v, str) and len(v) <= 64 and v.isprintable() else None  # noqa: E731
        kind, code = self.redact(word(error.get("type")) or "api_error"), word(error.get("code"))
        if self.access.provider == "anthropic":
            return json.dumps({"type": "error", "error": {"type": kind, "message": message}})
        return json.dumps({"error": {"message": message, "type": kind, "code": code and self.redact(code)}})

    def _count(self, text: str, sent: int, step: Any) -> None:
        try:
            tokens = count_tokens(self.access.provider, json.loads(text))
        except (ValueError, RecursionError):
            tokens = None
        estimated = tokens is None
        if tokens is None:   # a server that reports no usage still spends the budget: ~4 bytes a token
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


def fetch(url: str, content: bytes, headers: dict[str, str], timeout: float) -> tuple[int, dict[str, str], str]:
    """POST and read the reply within `timeout` seconds in all (TimeoutError past it), at most
    wire.MAX_MESSAGE_BYTES of it."""
    import httpx2
    deadline = time.monotonic() + timeout
    try:
        with http_client().stream("POST", url, content=content, headers=headers, timeout=timeout) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > wire.MAX_MESSAGE_BYTES:
                    raise httpx2.DecodingError(f"the reply was over {wire.MAX_MESSAGE_BYTES:,} bytes")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError
            text = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
            return response.status_code, dict(response.headers), text
    except httpx2.TimeoutException:
        raise TimeoutError from None


def refusal(status: int, message: str, budget: bool = False) -> dict[str, Any]:
    """An answer of the relay itself, in the provider's error shape; the SDK must not retry it."""
    headers = {"content-type": "application/json", "x-should-retry": "false"}
    if budget:
        headers[BUDGET_MARK] = "1"
    body = {"type": "error", "error": {"type": "relay_refused", "message": message}}
    return {"status": status, "headers": headers, "body": json.dumps(body)}


def one_line(value: Any, limit: int = MESSAGE_CHARS) -> str:
    return " ".join(str(value)[:limit * 4].split())[:limit]


def endpoint(url: str) -> str:
    """scheme://host[:port] of a URL: enough to say where, never credentials, a path or a query."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(not a valid URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
