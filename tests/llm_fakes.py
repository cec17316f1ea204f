"""Model providers stood in for on 127.0.0.1, speaking the real OpenAI and Anthropic wire formats.

`FakeUpstream` answers `POST /v1/chat/completions` (OpenAI Chat Completions) and
`POST /v1/messages` (Anthropic Messages), plain JSON or streamed as server-sent events
exactly as the providers stream them, and `GET /v1/models`. Tests and benchmarks point
the gateway's `LLM_OPENAI_BASE_URL` / `LLM_ANTHROPIC_BASE_URL` at `base_url`, then assert
on the requests it received. A test can script the next answers (`respond`): an error
in the provider's shape, a delay before the first byte, a stream cut off half way.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class UpstreamCall:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def credential(self) -> str | None:
        """The key the caller presented: `x-api-key` (Anthropic) or `Authorization: Bearer` (OpenAI)."""
        lowered = {k.lower(): v for k, v in self.headers.items()}
        if "x-api-key" in lowered:
            return lowered["x-api-key"]
        auth = lowered.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


@dataclass
class Script:
    """How to answer the next `times` calls (None: every call from now on)."""

    status: int = 200
    error: dict[str, Any] | None = None  # a provider-shaped error body, sent with `status`
    text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    first_byte_delay: float | None = None
    chunk_delay: float | None = None
    cut_after_chunks: int | None = None  # close the connection after this many SSE chunks
    times: int | None = 1


@dataclass
class Defaults:
    text: str = "Hello from the fake model. It answers every question the same way."
    input_tokens: int = 42
    output_tokens: int = 17
    cache_read_tokens: int = 0
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    chunks: int = 5


class FakeUpstream:
    """One loopback server speaking both providers' APIs; `close()` when done."""

    def __init__(self, *, expected_key: str | None = None, defaults: Defaults | None = None) -> None:
        self.expected_key = expected_key
        self.defaults = defaults or Defaults()
        self.calls: list[UpstreamCall] = []
        self._scripts: dict[str, list[Script]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the providers' servers do

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                fake._serve(self, UpstreamCall(self.path, dict(self.headers), body))

            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self, UpstreamCall(self.path, dict(self.headers), {}))

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-upstream", daemon=True)
        self._thread.start()

    # --- scripting and assertions ------------------------------------------------------

    def respond(self, path_suffix: str, **script: Any) -> None:
        """Answer the next call whose path ends with `path_suffix` ("/chat/completions", "/messages") this way."""
        with self._lock:
            self._scripts.setdefault(path_suffix, []).append(Script(**script))

    def calls_to(self, path_suffix: str) -> list[UpstreamCall]:
        with self._lock:
            return [c for c in self.calls if c.path.split("?")[0].endswith(path_suffix)]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._scripts.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- serving -----------------------------------------------------------------------

    def _next_script(self, path: str) -> Script:
        with self._lock:
            for suffix, scripts in self._scripts.items():
                if path.split("?")[0].endswith(suffix) and scripts:
                    script = scripts[0]
                    if script.times is not None:
                        script.times -= 1
                        if script.times <= 0:
                            scripts.pop(0)
                    return script
        return Script()

    def _serve(self, handler: BaseHTTPRequestHandler, call: UpstreamCall) -> None:
        with self._lock:
            self.calls.append(call)
        path = call.path.split("?")[0]
        anthropic = path.endswith("/messages")
        if self.expected_key is not None and call.credential != self.expected_key:
            return _send_json(handler, 401, _error(anthropic, "authentication_error", "invalid x-api-key" if anthropic else "Incorrect API key provided"))
        if path.endswith("/models"):
            return _send_json(handler, 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "fake"}]})
        if not (path.endswith("/chat/completions") or anthropic):
            return _send_json(handler, 404, _error(anthropic, "not_found_error", f"no route {path}"))
        script = self._next_script(path)
        delay = self.defaults.first_byte_delay if script.first_byte_delay is None else script.first_byte_delay
        if delay:
            time.sleep(delay)
        if script.status != 200 or script.error is not None:
            body = script.error or _error(anthropic, "api_error", "scripted failure")
            return _send_json(handler, script.status if script.status != 200 else 500, body)
        answer = _Answer(
            model=str(call.body.get("model") or ("claude-sonnet-4-5" if anthropic else "gpt-4o-mini")),
            text=self.defaults.text if script.text is None else script.text,
            input_tokens=self.defaults.input_tokens if script.input_tokens is None else script.input_tokens,
            output_tokens=self.defaults.output_tokens if script.output_tokens is None else script.output_tokens,
            cache_read_tokens=self.defaults.cache_read_tokens,
        )
        if call.body.get("stream"):
            include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
            events = answer.anthropic_events(self.defaults.chunks) if anthropic else answer.openai_chunks(self.defaults.chunks, include_usage)
            chunk_delay = self.defaults.chunk_delay if script.chunk_delay is None else script.chunk_delay
            return _send_sse(handler, events, chunk_delay, script.cut_after_chunks)
        return _send_json(handler, 200, answer.anthropic_message() if anthropic else answer.openai_completion())


@dataclass
class _Answer:
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    def _pieces(self, n: int) -> list[str]:
        size = max(1, -(-len(self.text) // max(1, n)))
        return [self.text[i : i + size] for i in range(0, len(self.text), size)] or [""]

    # OpenAI Chat Completions
    def openai_completion(self) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text}, "logprobs": None, "finish_reason": "stop"}],
            "usage": self._openai_usage(),
        }

    def _openai_usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
        }

    def openai_chunks(self, n: int, include_usage: bool) -> list[str]:
        base = {"id": f"chatcmpl-{self.id}", "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model}
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in self._pieces(n)]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": self._openai_usage()})
        return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]

    # Anthropic Messages
    def _anthropic_usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cache_read_tokens,
        }

    def anthropic_message(self) -> dict[str, Any]:
        return {
            "id": f"msg_{self.id}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": self.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": self._anthropic_usage(self.output_tokens),
        }

    def anthropic_events(self, n: int) -> list[str]:
        start = {**self.anthropic_message(), "content": [], "stop_reason": None, "usage": self._anthropic_usage(1)}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
            for piece in self._pieces(n)
        ]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": self.output_tokens}},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


def _error(anthropic: bool, kind: str, message: str) -> dict[str, Any]:
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _send_json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _send_sse(handler: BaseHTTPRequestHandler, events: list[str], delay: float, cut_after: int | None) -> None:
    """Stream `events` with chunked transfer encoding, as the providers do."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        for i, event in enumerate(events):
            if cut_after is not None and i >= cut_after:
                handler.close_connection = True
                handler.wfile.flush()
                return  # no terminating chunk: the client sees the stream end early
            data = event.encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
            if delay:
                time.sleep(delay)
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True  # the client went away mid-stream
