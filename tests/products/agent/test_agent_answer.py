"""The built-in agent's model call, through the real gateway (uvicorn on loopback) to a fake provider.

Invariants: every agent call goes through OUR gateway with a token minted for that run only,
so the call is billed to the run's project and its usage event names the run (`$ai_run_id`);
the gateway's answers map to the three outcomes the task-run workflow acts on: a 429 is
`AgentQuotaExceeded` (with the gateway's words), a dead gateway, a 5xx or a timeout is
`AgentUnavailable` (retry), any other 4xx is `AgentRefused` (do not retry).
"""
from __future__ import annotations

import json
import time

import httpx
import pytest

from products.agent.facade import (
    AgentQuotaExceeded,
    AgentRefused,
    AgentUnavailable,
    agent_model,
    answer,
    build_conversation,
)
from products.billing import quota_limiting as ql
from products.billing.models import UsageEvent
from products.billing.quota_limiting import QuotaResource
from products.llm_gateway.facade import mint_server_token
from products.tasks.facade import FollowUpItem
from tests.conftest import FAKE_PROVIDER_KEY, free_port

from .agent_support import task_run  # noqa: F401 (fixture)


@pytest.fixture
def gateway(gateway_server, fake_upstream, settings):
    """The real gateway, reached where the worker reaches it (`LLM_GATEWAY_URL`), with the fake provider behind it."""
    settings.LLM_GATEWAY_URL = gateway_server.base_url
    settings.LLM_AGENT_MODEL = ""
    settings.LLM_AGENT_TIMEOUT_SECONDS = 30
    return gateway_server


def usage_events(gateway_server) -> list[UsageEvent]:
    gateway_server.wait_for_usage()
    return list(UsageEvent.objects.order_by("id"))


def test_an_answer_goes_through_the_gateway_with_the_conversation_and_is_billed_to_the_run(gateway, fake_upstream, task_run):
    fake_upstream.respond("/chat/completions", text="1. Reproduce with a retry loop. 2. Pin the cookie clock.")
    conversation = build_conversation(task_run, [FollowUpItem(id=1, text="only the login test please", author_name="alice")], [])
    reply = answer(task_run, conversation)

    assert reply.text == "1. Reproduce with a retry loop. 2. Pin the cookie clock."
    assert reply.model == "gpt-4o-mini" and reply.demo is False  # an OpenAI key is configured: the default model
    [call] = fake_upstream.calls_to("/chat/completions")
    assert call.credential == FAKE_PROVIDER_KEY  # the gateway's key upstream, never the run token
    assert call.body["model"] == "gpt-4o-mini"
    sent = [(m["role"], m["content"]) for m in call.body["messages"]]
    assert sent == [(m.role, m.content) for m in conversation]
    assert "Slack thread" in sent[0][1] and "fix the flaky login test in acme/web" in sent[1][1]
    assert sent[-1] == ("user", "Follow-up from alice:\nonly the login test please")

    [event] = usage_events(gateway)
    assert event.project_id == task_run.project_id
    assert event.product == "slack_app" and event.billable is True and event.is_error is False
    assert event.properties["$ai_run_id"] == task_run.run_id
    assert event.properties["$ai_trace_id"] == f"task-run-{task_run.run_id}"
    assert event.properties["task_id"] == task_run.task_id
    assert event.properties["$ai_credential"] == "server_token"
    assert (event.input_tokens, event.output_tokens) == (42, 17)


def test_a_claude_model_is_asked_through_the_anthropic_api_with_the_system_prompt_apart(gateway, fake_upstream, task_run, settings):
    settings.LLM_AGENT_MODEL = "claude-sonnet-4-5"
    conversation = build_conversation(task_run, [], [])
    reply = answer(task_run, conversation)
    assert reply.text.startswith("Hello from the fake model") and reply.model == "claude-sonnet-4-5"
    [call] = fake_upstream.calls_to("/messages")
    assert call.body["system"] == conversation[0].content
    assert call.body["messages"] == [{"role": "user", "content": conversation[1].content}]
    assert call.body["max_tokens"] > 0
    [event] = usage_events(gateway)
    assert event.properties["$ai_run_id"] == task_run.run_id and event.billable


def test_a_team_out_of_credits_gets_quota_exceeded_with_the_gateways_message(gateway, fake_upstream, task_run):
    from products.accounts.models import Project

    token = Project.objects.get(pk=task_run.project_id).api_token
    ql.add_limited_tokens(QuotaResource.AI_CREDITS, {token: int(time.time() + 3600)})
    with pytest.raises(AgentQuotaExceeded) as raised:
        answer(task_run, build_conversation(task_run, [], []))
    assert raised.value.status == 429
    assert "AI credits" in raised.value.message
    assert fake_upstream.calls == []  # refused before anything was spent


def test_a_gateway_that_is_down_is_unavailable(task_run, settings, db):
    settings.LLM_GATEWAY_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(AgentUnavailable) as raised:
        answer(task_run, build_conversation(task_run, [], []))
    assert raised.value.status is None and "could not be reached" in raised.value.message
    assert time.monotonic() - started < 5


def test_a_provider_error_relayed_as_5xx_is_unavailable(gateway, fake_upstream, task_run):
    fake_upstream.respond("/chat/completions", status=503, error={"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(AgentUnavailable) as raised:
        answer(task_run, build_conversation(task_run, [], []))
    assert raised.value.status == 503 and raised.value.message == "overloaded"


def test_a_model_slower_than_the_timeout_is_unavailable(gateway, fake_upstream, task_run, settings):
    settings.LLM_AGENT_TIMEOUT_SECONDS = 0.5
    fake_upstream.respond("/chat/completions", first_byte_delay=2.0)
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match="did not answer in time"):
        answer(task_run, build_conversation(task_run, [], []))
    assert time.monotonic() - started < 1.8


def test_a_model_the_product_does_not_allow_is_refused_not_retried(gateway, fake_upstream, task_run, settings):
    settings.LLM_AGENT_MODEL = "gpt-3.5-turbo"
    with pytest.raises(AgentRefused) as raised:
        answer(task_run, build_conversation(task_run, [], []))
    assert raised.value.status == 400 and raised.value.code == "model_not_allowed"
    assert "not allowed for product slack_app" in raised.value.message
    assert fake_upstream.calls == []


def test_a_conversation_must_end_with_a_user_turn(task_run):
    from products.agent.facade import AgentMessage

    with pytest.raises(ValueError):
        answer(task_run, [AgentMessage("system", "x"), AgentMessage("assistant", "done")])


def test_only_a_token_minted_for_slack_app_reaches_it(gateway, fake_upstream, task_run, accounts):
    """A run token for another product, or a member's own key, cannot spend on the agent's product."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    url = gateway.url("slack_app")
    other_product = mint_server_token(task_run.project_id, "slack_app_routing", run_id=task_run.run_id)
    refused = httpx.post(url, headers={"Authorization": f"Bearer {other_product}"}, json=body, timeout=30)
    assert refused.status_code == 401 and "minted for product slack_app_routing" in refused.json()["error"]["message"]

    from products.accounts.models import Project

    project = Project.objects.get(pk=task_run.project_id)
    user = accounts.user(project.organization)
    _, key = accounts.key(user, scopes=["llm_gateway:read"])
    personal = httpx.post(url, headers={"x-api-key": key}, json=body, timeout=30)
    assert personal.status_code == 403 and personal.json()["error"]["code"] == "server_credential_required"
    assert fake_upstream.calls == []

    # The right token for another run of the same project works, and is recorded for THAT run.
    other_run = mint_server_token(task_run.project_id, "slack_app", run_id=task_run.run_id + 1000)
    served = httpx.post(url, headers={"Authorization": f"Bearer {other_run}"}, json=body, timeout=30)
    assert served.status_code == 200
    [event] = usage_events(gateway)
    assert event.properties["$ai_run_id"] == task_run.run_id + 1000


def test_the_default_model_follows_the_keys_configured(settings):
    settings.LLM_AGENT_MODEL = ""
    settings.LLM_OPENAI_API_KEY, settings.LLM_ANTHROPIC_API_KEY = "", ""
    assert agent_model() == "posthog-demo"
    settings.LLM_ANTHROPIC_API_KEY = "sk-ant"
    assert agent_model() == "claude-sonnet-4-5"
    settings.LLM_OPENAI_API_KEY = "sk-oai"
    assert agent_model() == "gpt-4o-mini"
    settings.LLM_AGENT_MODEL = "gpt-5"
    assert agent_model() == "gpt-5"
