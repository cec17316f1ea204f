"""One model call of the built-in agent, through OUR LLM gateway, with a token for that run only.

The agent never talks to a provider: it calls the gateway (`settings.LLM_GATEWAY_URL`, product
`slack_app`, billable) with a server token minted for (project, "slack_app", run), so the gateway
attributes and bills the call to the run's project, throttles it like any call, and records a
usage event carrying `$ai_run_id` (what the task page adds up as the run's credits). The answer
is mapped to the three outcomes the task-run workflow acts on (errors.py): a reply,
`AgentQuotaExceeded` (429), `AgentUnavailable` (gateway down, 5xx, timeout: retry) or
`AgentRefused` (any other 4xx: do not retry).

The model: `settings.LLM_AGENT_MODEL`, else a sensible default for the provider key configured
here, else the gateway's offline demo model (`posthog-demo`), so `make run` with no key still
completes the loop with an answer that says it is a demo. In a deployment where only the
gateway holds the provider keys, set `LLM_AGENT_MODEL` on the worker.

`answer` is synchronous (it runs in an activity's thread); one `httpx.Client` per process keeps
connections to the gateway alive across calls.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from products.llm_gateway import facade as llm_gateway

from .conversation import ASSISTANT, SYSTEM, AgentMessage, AgentReply
from .errors import AgentQuotaExceeded, AgentRefused, AgentUnavailable

if TYPE_CHECKING:
    from products.tasks.facade import RunSnapshot

logger = logging.getLogger(__name__)

AGENT_PRODUCT = "slack_app"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
ANTHROPIC_DEFAULT_MODEL = "claude-sonnet-4-5"
ANTHROPIC_VERSION = "2023-06-01"
MAX_ANSWER_TOKENS = 4096
# A dead gateway is known within CONNECT_TIMEOUT; a slow model gets LLM_AGENT_TIMEOUT_SECONDS per read.
CONNECT_TIMEOUT_SECONDS = 3.0
TOKEN_TTL = timedelta(minutes=15)  # one call; well above any read timeout
MAX_ERROR_CHARS = 500

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http() -> httpx.Client:
    """The process's client for the gateway (created on first use; our own gateway, never via a proxy)."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0),
            )
        return _client


def agent_model() -> str:
    """The model the agent asks for: the setting, else a default for the key configured, else the demo model."""
    configured = (getattr(settings, "LLM_AGENT_MODEL", "") or "").strip()
    if configured:
        return configured
    if getattr(settings, "LLM_OPENAI_API_KEY", ""):
        return OPENAI_DEFAULT_MODEL
    if getattr(settings, "LLM_ANTHROPIC_API_KEY", ""):
        return ANTHROPIC_DEFAULT_MODEL
    return llm_gateway.DEMO_MODEL


def _timeout() -> httpx.Timeout:
    read = float(getattr(settings, "LLM_AGENT_TIMEOUT_SECONDS", 120.0) or 120.0)
    return httpx.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=read, write=30.0, pool=30.0)


def _request(model: str, conversation: list[AgentMessage], token: str) -> tuple[str, dict[str, str], dict[str, Any], bool]:
    """(url, headers, body, anthropic?) for one call: the Anthropic Messages API for Claude, else OpenAI's."""
    base = str(getattr(settings, "LLM_GATEWAY_URL", "") or "http://127.0.0.1:8001").rstrip("/")
    if model.startswith("claude-"):
        system = "\n\n".join(m.content for m in conversation if m.role == SYSTEM)
        messages = [{"role": m.role, "content": m.content} for m in conversation if m.role != SYSTEM]
        body: dict[str, Any] = {"model": model, "max_tokens": MAX_ANSWER_TOKENS, "messages": messages}
        if system:
            body["system"] = system
        headers = {"x-api-key": token, "anthropic-version": ANTHROPIC_VERSION}
        return f"{base}/llm/{AGENT_PRODUCT}/v1/messages", headers, body, True
    body = {
        "model": model,
        "max_completion_tokens": MAX_ANSWER_TOKENS,
        "messages": [{"role": m.role, "content": m.content} for m in conversation],
    }
    return f"{base}/llm/{AGENT_PRODUCT}/v1/chat/completions", {"Authorization": f"Bearer {token}"}, body, False


def answer(run: "RunSnapshot", conversation: list[AgentMessage]) -> AgentReply:
    """Ask the model (through the gateway, billed to the run's project and run) to answer `conversation`.

    Raises `AgentQuotaExceeded` (429, with the gateway's message), `AgentUnavailable`
    (unreachable, timeout, 5xx, an unusable answer: retry) or `AgentRefused` (any other 4xx).
    """
    if not conversation or conversation[-1].role == ASSISTANT:
        raise ValueError("The conversation must end with a user turn for the model to answer.")
    model = agent_model()
    try:
        token = llm_gateway.mint_server_token(run.project_id, AGENT_PRODUCT, run_id=run.run_id, ttl=TOKEN_TTL)
    except Exception as error:  # noqa: BLE001 - no signing key, unknown product: configuration, not transient
        raise AgentRefused(f"Could not mint a gateway token for run {run.run_id}: {error}") from error
    url, headers, body, anthropic = _request(model, conversation, token)
    headers.update(
        {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Trace-Id": f"task-run-{run.run_id}",  # every call of one run shares a trace
            "X-PostHog-Properties": json.dumps({"task_id": run.task_id}),
        }
    )
    started = time.monotonic()
    try:
        response = _http().post(url, headers=headers, content=json.dumps(body).encode(), timeout=_timeout())
    except httpx.TimeoutException as error:
        raise AgentUnavailable(f"The LLM gateway did not answer in time ({type(error).__name__}).") from error
    except httpx.HTTPError as error:
        raise AgentUnavailable(f"The LLM gateway could not be reached: {type(error).__name__}: {error}") from error
    elapsed_ms = (time.monotonic() - started) * 1000
    if response.status_code != 200:
        message, code = _error_of(response)
        logger.warning("Agent call for run %s: gateway %s %s (%s) in %.0f ms", run.run_id, response.status_code, code, message, elapsed_ms)
        if response.status_code == 429:
            raise AgentQuotaExceeded(message, status=429, code=code)
        if response.status_code >= 500:
            raise AgentUnavailable(message, status=response.status_code, code=code)
        raise AgentRefused(message, status=response.status_code, code=code)
    try:
        payload = response.json()
        text = _text_of(payload, anthropic)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise AgentUnavailable(f"The model's answer could not be read: {type(error).__name__}.", status=200) from error
    if not text.strip():
        raise AgentUnavailable("The model answered with no text.", status=200)
    answered_by = payload.get("model") if isinstance(payload.get("model"), str) and payload.get("model") else model
    logger.info("Agent call for run %s: %s answered %d chars in %.0f ms", run.run_id, answered_by, len(text), elapsed_ms)
    return AgentReply(text=text.strip(), model=answered_by, demo=model == llm_gateway.DEMO_MODEL)


def _text_of(payload: Any, anthropic: bool) -> str:
    if anthropic:
        blocks = payload["content"]
        return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    content = payload["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError("no text content")
    return content


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(message, code) of a gateway error in either API shape; the raw text when it is not one."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code") or error.get("type") or ""
        return error["message"][:MAX_ERROR_CHARS], str(code)
    text = response.text.strip()[:MAX_ERROR_CHARS]
    return (text or f"The LLM gateway answered {response.status_code}."), ""
