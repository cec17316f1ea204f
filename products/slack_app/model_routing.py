"""Ask a small model, through our LLM gateway, which repository an ambiguous mention is about.

`route_repository` (pure rules) decides when the text names a repository, when there is
only one, or a default. When it cannot ("needs the picker") and a model provider is
configured, `pick_repository` asks the gateway (product `slack_app_routing`, so the call
is metered and billed like any other) for a short JSON answer and returns the
repository only when the answer is usable: one of the project's repositories, with
confidence >= `MIN_CONFIDENCE`. Anything else (no provider, the gateway's 429 over
quota, any other non-200, a timeout, unparsable JSON, an unknown repository, low
confidence, a token that cannot be minted) returns None, and the picker asks the user.
It never raises: a routing hint must never fail the mention.

The call runs inside the route activity (sync, on the worker's thread pool), so the
workflow's commands are unchanged; `ROUTING_TIMEOUT_SECONDS` bounds each socket read
and stays well inside the activity's start-to-close timeout.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings

from products.llm_gateway import facade as llm_gateway

logger = logging.getLogger(__name__)

ROUTING_PRODUCT = "slack_app_routing"
# Below this the model is guessing: ask the user instead.
MIN_CONFIDENCE = 0.7
# Connect and each read; the route activity's start-to-close (30 s) leaves ample room.
ROUTING_TIMEOUT_SECONDS = 5.0
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
ANTHROPIC_DEFAULT_MODEL = "claude-haiku-4-5"
MAX_ANSWER_TOKENS = 60
# The mention is the question; a longer text costs more and does not route better.
MAX_TEXT_CHARS = 2000
MAX_REPOSITORIES = 100
TOKEN_TTL = timedelta(minutes=5)

SYSTEM_PROMPT = (
    "You route a request made in Slack to one of a team's code repositories. "
    "Answer with one JSON object and nothing else: "
    '{"repository": "<owner/name from the list>" or null, "confidence": <number from 0 to 1>}. '
    "Use null when the request does not clearly concern one repository of the list."
)

_SLACK_USER = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_TRACE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # what the gateway accepts as X-Trace-Id


@dataclass(frozen=True)
class ModelChoice:
    """What the model answered: `repository` is set only when it may be used; `reason` says why not otherwise."""

    repository: str | None
    reason: str  # "chosen", or the fallback's reason ("no_provider", "gateway_429", "timeout", ...)
    confidence: float | None = None


def provider() -> str | None:
    """Return "openai" or "anthropic" (the API the router calls), or None when no provider is configured."""
    if getattr(settings, "LLM_OPENAI_API_KEY", ""):
        return "openai"
    if getattr(settings, "LLM_ANTHROPIC_API_KEY", ""):
        return "anthropic"
    return None


def is_configured() -> bool:
    """Say whether the router may ask a model at all (otherwise: straight to the picker, no call)."""
    return provider() is not None


def pick_repository(*, project_id: int, text: str, repositories: list[str], trace_id: str = "") -> ModelChoice:
    """Ask the gateway which of `repositories` the mention `text` is about; never raise.

    The result's `repository` is one of `repositories` (spelled as configured) or None,
    meaning: ask with the picker. `trace_id` (the mention workflow's id) is sent as the
    gateway's `X-Trace-Id`, so the usage event names the mention it was spent on.
    """
    api = provider()
    if api is None:
        return ModelChoice(None, "no_provider")
    if not repositories:
        return ModelChoice(None, "no_repositories")
    started = time.monotonic()
    try:
        choice = _ask(api, project_id=project_id, text=text, repositories=repositories[:MAX_REPOSITORIES], trace_id=trace_id)
    except Exception as error:  # noqa: BLE001 - a routing hint must never fail the mention
        logger.warning("Repository routing for project #%s failed unexpectedly: %r", project_id, error)
        choice = ModelChoice(None, "error")
    # A model that declines or hesitates is normal; a gateway or answer failure is worth a warning.
    log = logger.info if choice.reason in ("chosen", "null", "low_confidence") else logger.warning
    log(
        "Repository routing for project #%s: %s (%s, confidence %s) in %.0f ms",
        project_id, choice.repository or "picker", choice.reason, choice.confidence, (time.monotonic() - started) * 1000,
    )
    return choice


def _ask(api: str, *, project_id: int, text: str, repositories: list[str], trace_id: str) -> ModelChoice:
    try:
        token = llm_gateway.mint_server_token(project_id, ROUTING_PRODUCT, ttl=TOKEN_TTL)
    except Exception as error:  # noqa: BLE001 - e.g. no signing key: ask the user instead
        logger.warning("Could not mint a gateway token for project #%s: %r", project_id, error)
        return ModelChoice(None, "no_token")
    model = getattr(settings, "LLM_ROUTING_MODEL", "") or (OPENAI_DEFAULT_MODEL if api == "openai" else ANTHROPIC_DEFAULT_MODEL)
    question = _question(text, repositories)
    base = str(getattr(settings, "LLM_GATEWAY_URL", "") or "http://127.0.0.1:8001").rstrip("/")
    if api == "openai":
        url = f"{base}/llm/{ROUTING_PRODUCT}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {token}"}
        body: dict[str, Any] = {
            "model": model,
            "temperature": 0,
            "max_tokens": MAX_ANSWER_TOKENS,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
        }
    else:
        url = f"{base}/llm/{ROUTING_PRODUCT}/v1/messages"
        headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
        body = {
            "model": model,
            "temperature": 0,
            "max_tokens": MAX_ANSWER_TOKENS,
            "system": SYSTEM_PROMPT,
            "messages": [{"role": "user", "content": question}],
        }
    if _TRACE_ID.match(trace_id or ""):
        headers["X-Trace-Id"] = trace_id
    status, payload = _post_json(url, headers, body)
    if status is None:
        return ModelChoice(None, payload)  # "timeout" or "unreachable"
    if status != 200:
        return ModelChoice(None, f"gateway_{status}")
    try:
        answer_text = _answer_text(api, json.loads(payload))
    except (ValueError, KeyError, IndexError, TypeError):
        return ModelChoice(None, "unparsable_response")
    return _judge(answer_text, repositories)


def _question(text: str, repositories: list[str]) -> str:
    request = _SLACK_USER.sub("", text or "").strip()[:MAX_TEXT_CHARS]
    listed = "\n".join(f"- {name}" for name in repositories)
    return f"Repositories:\n{listed}\n\nRequest:\n{request}"


# Our own gateway is reached directly: no HTTP(S)_PROXY from the environment in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_json(url: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int | None, str]:
    """POST `body`; return (status, response text), or (None, "timeout" / "unreachable")."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=ROUTING_TIMEOUT_SECONDS) as response:
            return response.status, response.read(64 * 1024).decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, ""
    except TimeoutError:
        return None, "timeout"
    except urllib.error.URLError as error:
        return None, "timeout" if isinstance(error.reason, TimeoutError) else "unreachable"
    except OSError:
        return None, "unreachable"


def _answer_text(api: str, response: dict[str, Any]) -> str:
    if api == "openai":
        content = response["choices"][0]["message"]["content"]
    else:
        content = "".join(block.get("text", "") for block in response["content"] if block.get("type") == "text")
    if not isinstance(content, str):
        raise TypeError("no text in the answer")
    return content


def _judge(answer_text: str, repositories: list[str]) -> ModelChoice:
    """Turn the model's text into a usable choice, or say why it is not one."""
    answer = _json_object(answer_text)
    if answer is None or "repository" not in answer:
        return ModelChoice(None, "unparsable_answer")
    confidence = answer.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        return ModelChoice(None, "unparsable_answer")
    confidence = float(confidence)
    if not 0.0 <= confidence <= 1.0:
        return ModelChoice(None, "unparsable_answer")
    named = answer["repository"]
    if named is None:
        return ModelChoice(None, "null", confidence)
    if not isinstance(named, str):
        return ModelChoice(None, "unparsable_answer", confidence)
    by_lower = {name.lower(): name for name in repositories}
    repository = by_lower.get(named.strip().lower())
    if repository is None:
        return ModelChoice(None, "unknown_repository", confidence)
    if confidence < MIN_CONFIDENCE:
        return ModelChoice(None, "low_confidence", confidence)
    return ModelChoice(repository, "chosen", confidence)


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in `text` (bare, or inside a ```json fence); None if there is none."""
    candidate = text.strip()
    if candidate.startswith("```"):
        candidate = candidate.strip("`").strip()
        if candidate.lower().startswith("json"):
            candidate = candidate[4:]
    try:
        value = json.loads(candidate)
    except ValueError:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start < 0 or end <= start:
            return None
        try:
            value = json.loads(candidate[start : end + 1])
        except ValueError:
            return None
    return value if isinstance(value, dict) else None
