"""The offline demo model, `posthog-demo`: served inside the gateway, no network, no provider key.

With no provider key configured, `make run` would answer every model call with a 503 and a
newcomer would never see a task come back to the thread. The built-in agent then asks for
this model instead (`LLM_AGENT_MODEL` empty), and the gateway answers it itself: the same
OpenAI and Anthropic wire formats (plain JSON and server-sent events), plausible token
usage, priced at 0 (pricing.py), and recorded like any call, so the product's billable
events, throttles and quota gate are exercised exactly as with a real model.

It is served as an `httpx` transport mounted on the gateway's upstream clients under a
host no network has (`DEMO_BASE_URL`, see upstream.py): the proxy, metering and SSE relay
run unchanged, and no socket is opened. Every answer starts with `DEMO_NOTICE`, so nobody
mistakes it for a model's work, then echoes a short plan for the request.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

DEMO_MODEL = "posthog-demo"
DEMO_PROVIDER_HOST = "posthog-demo.invalid"  # RFC 2606: resolves nowhere, so nothing can leak to a network
DEMO_BASE_URL = f"http://{DEMO_PROVIDER_HOST}"
DEMO_NOTICE = (
    "This is PostHog Code's offline demo model, not a real AI: it has not read your code and "
    "its answer is a template. Set LLM_OPENAI_API_KEY or LLM_ANTHROPIC_API_KEY to use a real model."
)
MAX_REQUEST_CHARS = 300  # of the request echoed back in the plan
STREAM_CHUNKS = 8


def is_demo_model(model: object) -> bool:
    """Say whether `model` names the demo model (served here, never forwarded)."""
    return model == DEMO_MODEL


# --- The answer --------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or OpenAI parts / Anthropic blocks of type text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of every message of the request, the Anthropic `system` first."""
    found = []
    system = _text_of(body.get("system"))
    if system:
        found.append(("system", system))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            found.append((str(message.get("role") or ""), _text_of(message.get("content"))))
    return found


_REPOSITORY = re.compile(r"\b([A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)\b")
_REPOSITORY_LINE = re.compile(r"^\s*repository\s*:\s*([A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)", re.IGNORECASE | re.MULTILINE)
# The request after a label the agent writes ("Request:", "Follow-up from alice:"), else the first line.
_REQUEST_LINE = re.compile(r"^\s*(?:task|request|follow-up from [^:\n]*)\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_SLACK_USER = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def _request_of(messages: list[tuple[str, str]]) -> tuple[str, str]:
    """(what the last user message asks, in one short line; the repository it names or "")."""
    user_texts = [text for role, text in messages if role == "user" and text.strip()]
    last = user_texts[-1] if user_texts else ""
    named = _REQUEST_LINE.search(last)
    request = named.group(1) if named else next((line for line in last.splitlines() if line.strip()), "")
    request = " ".join(_SLACK_USER.sub("", request).split())
    if len(request) > MAX_REQUEST_CHARS:
        request = request[: MAX_REQUEST_CHARS - 1].rstrip() + "…"
    everything = "\n".join(user_texts)
    repository = _REPOSITORY_LINE.search(everything) or _REPOSITORY.search(everything)
    return request, (repository.group(1).strip("`.,") if repository else "")


def demo_answer(body: dict[str, Any]) -> str:
    """The demo's answer to a request: the notice, then a short plan that echoes the request."""
    request, repository = _request_of(_messages(body))
    where = f" in {repository}" if repository else ""
    lines = [DEMO_NOTICE, ""]
    lines.append(f"Here is the plan a real model would follow for: \"{request or 'your request'}\"")
    lines += [
        f"1. Find the code{where} that the request is about and read it.",
        "2. Reproduce the problem, or pin down the change, with a small failing test.",
        "3. Make the smallest change that makes the test pass, and explain it.",
        "4. Run the tests, then propose the patch (a real model would write it out here).",
    ]
    return "\n".join(lines)


def _tokens(text: str) -> int:
    """A plausible token count: about four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


# --- The wire formats ----------------------------------------------------------------------


def _pieces(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai(body: dict[str, Any], text: str, input_tokens: int, output_tokens: int) -> httpx.Response:
    ident, created = f"chatcmpl-demo{uuid.uuid4().hex[:20]}", int(time.time())
    usage = {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    if body.get("stream") is not True:
        return httpx.Response(
            200,
            json={
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": DEMO_MODEL,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
                ],
                "usage": usage,
            },
        )
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": DEMO_MODEL}
    chunks: list[dict[str, Any]] = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in _pieces(text, STREAM_CHUNKS)]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    return _sse(events)


def _anthropic(body: dict[str, Any], text: str, input_tokens: int, output_tokens: int) -> httpx.Response:
    def usage(output: int) -> dict[str, int]:
        return {"input_tokens": input_tokens, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

    message = {
        "id": f"msg_demo{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": DEMO_MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage(output_tokens),
    }
    if body.get("stream") is not True:
        return httpx.Response(200, json=message)
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": usage(1)}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in _pieces(text, STREAM_CHUNKS)
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": output_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return _sse([f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events])


def _sse(events: list[str]) -> httpx.Response:
    async def stream() -> AsyncIterator[bytes]:
        for event in events:
            yield event.encode()

    return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=stream())


def _error(anthropic: bool, status: int, message: str) -> httpx.Response:
    if anthropic:
        return httpx.Response(status, json={"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


async def _serve(request: httpx.Request) -> httpx.Response:
    """Answer one request the gateway forwarded to the demo provider, as that provider's API would."""
    path = request.url.path
    anthropic = path.endswith("/v1/messages")
    if not (anthropic or path.endswith("/v1/chat/completions")):
        return _error(anthropic, 404, f"The demo model serves /v1/chat/completions and /v1/messages, not {path}.")
    try:
        body = json.loads(await request.aread())
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return _error(anthropic, 400, "The body must carry a non-empty `messages` list.")
    messages = _messages(body)
    text = demo_answer(body)
    input_tokens = _tokens("".join(t for _, t in messages)) + 4 * len(messages)
    output_tokens = _tokens(text)
    if anthropic:
        return _anthropic(body, text, input_tokens, output_tokens)
    return _openai(body, text, input_tokens, output_tokens)


def demo_transport() -> httpx.MockTransport:
    """The transport the gateway's upstream clients mount for `DEMO_BASE_URL`: the demo provider, in process."""
    return httpx.MockTransport(_serve)
