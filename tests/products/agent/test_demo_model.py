"""The offline demo model, served by the gateway itself: what a newcomer without a provider key sees.

Invariants: with no provider key, the agent's answer comes back (no network, no 503) and says
plainly, every time, that it is an offline demo model, not a real AI, then echoes a plan for
the request; both wire shapes work, streamed or not, with plausible token counts; the call is
recorded for the billable product like any other, at a price of 0.
"""
from __future__ import annotations

import json

import httpx
import pytest

from products.agent.facade import answer, build_conversation
from products.billing.models import UsageEvent
from products.llm_gateway.demo_model import DEMO_NOTICE
from products.llm_gateway.facade import mint_server_token
from products.tasks.facade import FollowUpItem

from .agent_support import task_run  # noqa: F401 (fixture)

NOTICE_START = "This is PostHog Code's offline demo model, not a real AI"


@pytest.fixture
def keyless_gateway(gateway_server, fake_upstream, settings):
    """The real gateway with NO provider key configured (fake_upstream only witnesses that nothing reaches it)."""
    settings.LLM_OPENAI_API_KEY = ""
    settings.LLM_ANTHROPIC_API_KEY = ""
    settings.LLM_GATEWAY_URL = gateway_server.base_url
    settings.LLM_AGENT_MODEL = ""
    return gateway_server


def events(gateway_server) -> list[UsageEvent]:
    gateway_server.wait_for_usage()
    return list(UsageEvent.objects.order_by("id"))


def test_without_a_key_the_agent_answers_with_the_demo_model_which_says_so(keyless_gateway, fake_upstream, task_run):
    reply = answer(task_run, build_conversation(task_run, [], []))
    assert reply.demo is True and reply.model == "posthog-demo"
    assert reply.text.startswith(NOTICE_START)
    assert "fix the flaky login test in acme/web" in reply.text  # the plan echoes the request
    assert "in acme/web" in reply.text.split("\n", 3)[-1]
    assert fake_upstream.calls == []  # served inside the gateway: nothing left it
    [event] = events(keyless_gateway)
    assert event.model == "posthog-demo" and event.product == "slack_app" and event.billable is True
    assert event.cost_usd == 0 and event.credits == 0 and event.properties["$ai_price_source"] == "demo"
    assert event.properties["$ai_run_id"] == task_run.run_id
    assert event.input_tokens > 50 and event.output_tokens > 50  # roughly four characters a token


def test_a_followup_gets_its_own_demo_answer_that_still_says_it_is_a_demo(keyless_gateway, task_run):
    first = build_conversation(task_run, [], [])
    reply = answer(task_run, first)
    from products.agent.facade import AgentMessage

    second = build_conversation(task_run, [FollowUpItem(id=1, text="now do the signup test", author_name="bob")],
                                [*first, AgentMessage("assistant", reply.text)])
    followup_reply = answer(task_run, second)
    assert followup_reply.text.startswith(NOTICE_START)
    assert "now do the signup test" in followup_reply.text


def sse_payloads(text: str) -> list[str]:
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_the_demo_model_speaks_both_wire_shapes(keyless_gateway, fake_upstream, task_run, shape, stream):
    token = mint_server_token(task_run.project_id, "slack_app", run_id=task_run.run_id)
    messages = [{"role": "user", "content": "Request: add dark mode to acme/app"}]
    if shape == "openai":
        url, headers = keyless_gateway.url("slack_app"), {"Authorization": f"Bearer {token}"}
        body = {"model": "posthog-demo", "messages": [{"role": "system", "content": "be brief"}, *messages]}
    else:
        url, headers = keyless_gateway.url("slack_app", "messages"), {"x-api-key": token, "anthropic-version": "2023-06-01"}
        body = {"model": "posthog-demo", "max_tokens": 500, "system": "be brief", "messages": messages}
    if stream:
        body["stream"] = True
    response = httpx.post(url, headers=headers, json=body, timeout=30)
    assert response.status_code == 200, response.text

    if not stream:
        payload = response.json()
        text = payload["choices"][0]["message"]["content"] if shape == "openai" else payload["content"][0]["text"]
        assert payload["model"] == "posthog-demo"
    else:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = sse_payloads(response.text)
        if shape == "openai":
            assert data[-1] == "[DONE]"
            chunks = [json.loads(d) for d in data[:-1]]
            assert not any(c.get("usage") for c in chunks)  # the client did not ask for the usage chunk
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        else:
            parsed = [json.loads(d) for d in data]
            assert parsed[0]["type"] == "message_start" and parsed[-1]["type"] == "message_stop"
            text = "".join(e["delta"]["text"] for e in parsed if e["type"] == "content_block_delta")
    assert text.startswith(DEMO_NOTICE)
    assert "add dark mode to acme/app" in text and "in acme/app" in text
    assert fake_upstream.calls == []

    [event] = events(keyless_gateway)
    assert (event.model, event.provider, event.is_error) == ("posthog-demo", shape, False)
    assert event.properties["$ai_stream"] is stream and event.billable and event.cost_usd == 0
    assert event.input_tokens > 0 and event.output_tokens == max(1, (len(text) + 3) // 4)


def test_the_demo_model_is_listed_for_the_agent_product(keyless_gateway, task_run):
    token = mint_server_token(task_run.project_id, "slack_app")
    listed = httpx.get(keyless_gateway.url("slack_app", "models"), headers={"x-api-key": token}, timeout=30).json()
    assert "posthog-demo" in [m["id"] for m in listed["data"]]


def test_a_real_model_without_a_key_is_still_a_503_not_the_demo(keyless_gateway, task_run):
    token = mint_server_token(task_run.project_id, "slack_app")
    response = httpx.post(keyless_gateway.url("slack_app"), headers={"x-api-key": token},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert response.status_code == 503 and response.json()["error"]["code"] == "provider_not_configured"


def test_a_bad_body_gets_the_providers_400(keyless_gateway, task_run):
    token = mint_server_token(task_run.project_id, "slack_app")
    response = httpx.post(keyless_gateway.url("slack_app"), headers={"x-api-key": token},
                          json={"model": "posthog-demo", "messages": []}, timeout=30)
    assert response.status_code == 400 and "messages" in response.json()["error"]["message"]


def test_the_plan_names_no_repository_when_none_was_chosen(keyless_gateway, task_run):
    import dataclasses

    run = dataclasses.replace(task_run, repository="", description="why is the login page slow?")
    reply = answer(run, build_conversation(run, [], []))
    assert reply.text.startswith(NOTICE_START)
    assert '"why is the login page slow?"' in reply.text
    assert "1. Find the code that the request is about" in reply.text  # no "in (none chosen..." repository
