"""Reading usage out of the providers' answers: whole JSON bodies and server-sent event streams.

`SSERelay` sits between the upstream's stream and the client's: it passes every complete
event on as soon as it has arrived (nothing is held back beyond the end of the event in
progress), and notes usage and the first token on the `CallMeter` as events go by:
OpenAI's final usage chunk (asked for with `stream_options.include_usage`); Anthropic's
`message_start.message.usage` (input and cache tokens) and `message_delta.usage`
(output tokens so far, cumulative). When the gateway asked for OpenAI's usage chunk and
the client did not, that chunk is dropped from what the client sees.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import ApiShape
from .metering import CallMeter


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def note_openai_usage(meter: CallMeter, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    meter.input_tokens = _int(usage.get("prompt_tokens"))
    meter.output_tokens = _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    meter.cache_read_tokens = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    meter.input_includes_cache = True


def note_anthropic_usage(meter: CallMeter, usage: Any, *, final: bool = True) -> None:
    if not isinstance(usage, dict):
        return
    meter.input_includes_cache = False
    if "input_tokens" in usage:
        meter.input_tokens = _int(usage.get("input_tokens"))
    if "cache_read_input_tokens" in usage:
        meter.cache_read_tokens = _int(usage.get("cache_read_input_tokens"))
    if "cache_creation_input_tokens" in usage:
        meter.cache_write_tokens = _int(usage.get("cache_creation_input_tokens"))
    if "output_tokens" in usage:
        meter.output_tokens = _int(usage.get("output_tokens"))


def note_body_usage(shape: ApiShape, meter: CallMeter, body: bytes) -> None:
    """Note the usage of a whole (non-streamed) answer."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return
    if not isinstance(parsed, dict):
        return
    if shape == "anthropic":
        note_anthropic_usage(meter, parsed.get("usage"))
    else:
        note_openai_usage(meter, parsed.get("usage"))


class SSERelay:
    """Pass a server-sent event stream on event by event, reading usage as it goes."""

    def __init__(self, shape: ApiShape, meter: CallMeter, *, drop_usage_chunk: bool = False) -> None:
        self.shape = shape
        self.meter = meter
        self.drop_usage_chunk = drop_usage_chunk
        self.completed = False  # saw the provider's end of stream ([DONE] / message_stop)
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        """Return the complete events in `data` (and what was pending), to send to the client now."""
        self._buffer += data.replace(b"\r\n", b"\n")
        out = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                break
            event, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            if self._observe(event):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever is left at the end of the stream (an event the upstream did not terminate)."""
        rest, self._buffer = self._buffer, b""
        if rest.strip():
            self._observe(rest)
        return rest

    def _observe(self, event: bytes) -> bool:
        """Note what `event` says; return False to drop it from the client's stream."""
        data_lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not data_lines:
            return True
        data = b"\n".join(data_lines)
        if data.strip() == b"[DONE]":
            self.completed = True
            return True
        try:
            payload = json.loads(data)
        except ValueError:
            return True
        if not isinstance(payload, dict):
            return True
        if self.shape == "anthropic":
            self._observe_anthropic(payload)
            return True
        return self._observe_openai(payload)

    def _observe_openai(self, chunk: dict) -> bool:
        if isinstance(chunk.get("error"), dict):
            self.meter.fail(json.dumps(chunk["error"]))
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls") or delta.get("refusal")):
                    self.meter.first_token()
                    break
        if chunk.get("usage"):
            note_openai_usage(self.meter, chunk["usage"])
            if self.drop_usage_chunk and not choices:
                return False
        return True

    def _observe_anthropic(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            note_anthropic_usage(self.meter, event["message"].get("usage"))
        elif kind == "content_block_delta":
            self.meter.first_token()
        elif kind == "message_delta":
            note_anthropic_usage(self.meter, event.get("usage"))
        elif kind == "message_stop":
            self.completed = True
        elif kind == "error":
            self.meter.fail(json.dumps(event.get("error")))


def stream_error_event(shape: ApiShape, message: str) -> bytes:
    """An error event in the provider's own streaming shape, for a stream the upstream broke off."""
    if shape == "anthropic":
        body = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()
    body = {"error": {"message": message, "type": "api_error", "code": "upstream_stream_broken"}}
    return f"data: {json.dumps(body)}\n\n".encode()
