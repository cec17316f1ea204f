"""Shared pieces of the gateway tests (test_gateway_*.py): a member with a key, and calls in both API shapes."""
from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from products.accounts.models import Project
from products.billing.models import UsageEvent

OPENAI_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Which repository?"}]}
ANTHROPIC_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Fix the test"}]}


@dataclass
class Member:
    project: Project
    key: str  # phx_..., scope llm_gateway:read, one visible project
    user: object


@pytest.fixture
def member(accounts) -> Member:
    org = accounts.organization()
    project = accounts.project(org)
    user = accounts.user(org)
    _, key = accounts.key(user, scopes=["llm_gateway:read"])
    return Member(project=project, key=key, user=user)


def chat(gateway_server, product: str, credential: str | None, body: dict | None = None, **headers) -> httpx.Response:
    sent = {"x-api-key": credential} if credential else {}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.post(gateway_server.url(product, "chat/completions"), headers=sent, json=body or OPENAI_BODY, timeout=30)


def message(gateway_server, product: str, credential: str | None, body: dict | None = None, **headers) -> httpx.Response:
    sent = {"x-api-key": credential} if credential else {}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.post(gateway_server.url(product, "messages"), headers=sent, json=body or ANTHROPIC_BODY, timeout=30)


def recorded(gateway_server) -> list[UsageEvent]:
    """Every usage event stored so far, oldest first, once the gateway has recorded what it began."""
    gateway_server.wait_for_usage()
    return list(UsageEvent.objects.order_by("id"))


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
