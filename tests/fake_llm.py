"""A local HTTP server that speaks the OpenAI Chat Completions and Anthropic
Messages APIs (non-streaming, with tool calls) and replays a scripted
conversation, so the real SDKs run end to end through our relay.

    server = FakeLLM("openai", [call("shell", command="ls"), finish("done")], key="sk-...")
    server.base_url   # for OPENAI_BASE_URL / ANTHROPIC_BASE_URL
    server.requests   # what arrived: path, headers, body

A turn is a reply (`call`, `calls`, `text`, `refusal`, `cut`), an HTTP error
(`error(429)`, `echo_error()`), or a function of the request body returning one
of those. After the script, the server answers with a finish call.

`strict=True` refuses, as real APIs do, an assistant message with neither
content nor tool calls. `metered=True` behaves like a real server about tokens:
the input counts ~4 bytes of the request a token, and a reply longer than the
request's output cap is cut there (stop reason "length"); otherwise the usage
is the turn's own (`usage=None`: none reported).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def call(name: str, text: str = "", usage: tuple[int, int] = (100, 20), **args: Any) -> dict:
    return {"calls": [(name, args)], "text": text, "usage": usage}


def calls(*pairs: tuple[str, Any], text: str = "", usage: tuple[int, int] = (100, 20)) -> dict:
    """Several tool calls in one answer; an argument given as a str is sent verbatim (malformed JSON)."""
    return {"calls": list(pairs), "text": text, "usage": usage}


def finish(summary: str, status: str = "succeeded", usage: tuple[int, int] = (100, 20)) -> dict:
    return call("finish", summary=summary, status=status, usage=usage)


def text(content: str, usage: tuple[int, int] = (100, 20)) -> dict:
    return {"calls": [], "text": content, "usage": usage}


def error(status: int, message: str = "", headers: dict | None = None, code: str | None = None) -> dict:
    return {"status": status, "message": message or f"error {status}", "headers": headers or {}, "code": code}


def echo_error(status: int = 400) -> dict:
    """An endpoint that echoes what it got (headers and all) in its error: a key-leak test."""
    return {"status": status, "echo": True, "message": "", "headers": {}, "code": None}


def echo_text() -> dict:
    """A reply whose text echoes the request's headers (a server that leaks what it got)."""
    return {"calls": [("shell", {"command": "true"})], "text": "", "echo_text": True, "usage": (100, 20)}


def refusal(message: str = "I can't help with that.", usage: tuple[int, int] = (100, 20)) -> dict:
    """A refusal: OpenAI's message.refusal, Anthropic's stop_reason "refusal"."""
    return {"calls": [], "text": "", "refusal": message, "usage": usage}


def cut(name: str, raw: str, text: str = "", usage: tuple[int, int] = (100, 8192)) -> dict:
    """A reply cut by the output-token limit in the middle of a call (its arguments `raw`, unfinished)."""
    return {"calls": [(name, raw)], "text": text, "usage": usage, "stop": "length"}


class FakeLLM:
    def __init__(self, provider: str, turns: list[dict | Callable[[dict], dict]], key: str = "",
                 latency: float = 0.0, strict: bool = False, metered: bool = False):
        self.provider = provider
        self.turns = list(turns)
        self.key = key
        self.latency = latency
        self.strict = strict
        self.metered = metered
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.position = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + ("/v1" if self.provider == "openai" else "")

    def env(self) -> dict[str, str]:
        prefix = "OPENAI" if self.provider == "openai" else "ANTHROPIC"
        return {f"{prefix}_BASE_URL": self.base_url, f"{prefix}_API_KEY": self.key}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- answering ----------------------------------------------------------
    def next_turn(self, body: dict) -> dict:
        with self.lock:
            turn = self.turns[self.position] if self.position < len(self.turns) else finish("script done")
            self.position += 1
        return turn(body) if callable(turn) else turn

    def answer(self, path: str, headers: dict, body: dict, size: int = 0) -> tuple[int, dict, dict]:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body, "size": size, "at": time.time()})
        expected = "/v1/chat/completions" if self.provider == "openai" else "/v1/messages"
        if path != expected:
            return 404, {}, self.error_body(404, f"no route {path}")
        given = (headers.get("authorization", "").removeprefix("Bearer ") if self.provider == "openai"
                 else headers.get("x-api-key", ""))
        if self.key and given != self.key:
            return 401, {}, self.error_body(401, "Incorrect API key provided")
        if self.strict and (problem := self.invalid(body)):
            return 400, {}, self.error_body(400, problem)
        if self.latency:
            time.sleep(self.latency)
        turn = self.next_turn(body)
        if turn.get("echo"):
            echoed = json.dumps({"headers": headers, "body": body})
            return turn["status"], {}, self.error_body(turn["status"], f"bad request: {echoed}")
        if "status" in turn:
            return turn["status"], turn["headers"], self.error_body(turn["status"], turn["message"], turn.get("code"))
        if turn.get("echo_text"):
            turn = dict(turn, text=json.dumps(headers))
        if self.metered:
            turn = self.meter(body, turn, size)
        return 200, {}, self.reply(body.get("model", ""), turn)

    def invalid(self, body: dict) -> str:
        """What a strict API says of an assistant message with neither content nor tool calls."""
        for message in body.get("messages", []):
            if message.get("role") != "assistant":
                continue
            if self.provider == "openai" and not message.get("content") and not message.get("tool_calls"):
                return "messages: an assistant message must have content or tool_calls"
            if self.provider == "anthropic" and not message.get("content"):
                return "messages: all messages must have non-empty content"
        return ""

    def meter(self, body: dict, turn: dict, size: int) -> dict:
        """The usage a real server would report; the reply cut at the request's output cap."""
        cap = body.get("max_tokens") or body.get("max_completion_tokens") or 10**9
        out = (len(turn.get("text") or "") + len(json.dumps(turn.get("calls") or []))) // 4 + 10
        turn = dict(turn, usage=(size // 4, min(out, cap)))
        if out > cap:
            turn.update(text=(turn.get("text") or "")[:cap * 4], stop="length",
                        calls=[(name, (args if isinstance(args, str) else json.dumps(args))[:cap * 4])
                               for name, args in turn.get("calls") or []])
        return turn

    def error_body(self, status: int, message: str, code: str | None = None) -> dict:
        kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 429: "rate_limit_error"}
        kind = kinds.get(status, "api_error")
        if self.provider == "anthropic":
            return {"type": "error", "error": {"type": kind, "message": message}}
        return {"error": {"message": message, "type": kind, "code": code}}

    def reply(self, model: str, turn: dict) -> dict:
        n = len(self.requests)
        tokens_in, tokens_out = turn.get("usage") or (0, 0)
        stop = turn.get("stop")
        if self.provider == "anthropic":
            said = turn.get("text") or turn.get("refusal")   # Anthropic's refusal: its text, stop_reason "refusal"
            content: list[dict] = [{"type": "text", "text": said}] if said else []
            content += [{"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name,
                         "input": args if isinstance(args, dict) else {}}
                        for i, (name, args) in enumerate(turn["calls"])]
            reason = ("refusal" if turn.get("refusal") else "max_tokens" if stop == "length" else
                      "tool_use" if turn["calls"] else "end_turn")
            return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
                    "content": content, "stop_reason": reason,
                    "stop_sequence": None, "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}
        tool_calls = [{"id": f"call_{n}_{i}", "type": "function",
                       "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                      for i, (name, args) in enumerate(turn["calls"])]
        message: dict[str, Any] = {"role": "assistant", "content": turn.get("text") or None}
        if turn.get("refusal"):
            message["refusal"] = turn["refusal"]
        if tool_calls:
            message["tool_calls"] = tool_calls
        reason = "length" if stop == "length" else "tool_calls" if tool_calls else "stop"
        answer = {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": model,
                  "choices": [{"index": 0, "message": message, "finish_reason": reason}]}
        if turn.get("usage") is not None:   # None: a server that reports no usage
            answer["usage"] = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                               "total_tokens": tokens_in + tokens_out}
        return answer

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True   # answer at once: no 40 ms delayed-ACK stalls
            wbufsize = 1 << 16               # headers and body in one write

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"__raw__": raw.decode("utf-8", "replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, payload = fake.answer(self.path, headers, body, len(raw))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        return Handler

    # -- for assertions -----------------------------------------------------
    def tool_results(self, index: int) -> str:
        """Everything request `index` sent back as tool results (and user text), as one string."""
        body = self.requests[index]["body"]
        parts = []
        for message in body.get("messages", []):
            if self.provider == "openai":
                if message.get("role") in ("tool", "user"):
                    parts.append(str(message.get("content")))
            elif message.get("role") == "user":
                for block in message.get("content", []):
                    parts.append(str(block.get("content") if block.get("type") == "tool_result" else block.get("text")))
        return "\n".join(parts)
