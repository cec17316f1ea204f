"""The repository router through the real LLM gateway (uvicorn on loopback) in front of a fake provider.

Invariants: the routing call is authenticated with a server token for the project and
product `slack_app_routing`, reaches the provider as a small model at temperature 0, and
is metered by the gateway as billable usage of the project; whatever goes wrong between
the router and the model (the provider failing, the gateway's 429 for a team out of AI
credits, a slow answer, garbage, a repository not in the list, low confidence) the
mention falls back to the picker.
"""
from __future__ import annotations

import json
import time

import pytest

from products.billing.facade import QuotaResource
from products.billing.models import UsageEvent
from products.billing.quota_limiting import add_limited_tokens
from products.slack_app import facade, model_routing

pytestmark = pytest.mark.django_db(transaction=True)

REPOS = ["acme/web", "acme/api"]
AMBIGUOUS = "<@UBOT> the checkout page is slow, please look into it"


def answer(repository, confidence=0.93) -> str:
    return json.dumps({"repository": repository, "confidence": confidence})


@pytest.fixture
def routed(integration, gateway_server, fake_upstream, settings):
    """The integration (repositories acme/web and acme/api, no default), the router pointed at the real gateway."""
    settings.LLM_GATEWAY_URL = gateway_server.base_url
    settings.LLM_ROUTING_MODEL = ""
    return integration


def routing_usage(project) -> list[UsageEvent]:
    return list(UsageEvent.objects.filter(project=project, product="slack_app_routing"))


def test_the_models_choice_through_the_gateway_is_used_and_billed(routed, gateway_server, fake_upstream):
    fake_upstream.respond("/chat/completions", text=answer("acme/api"))

    choice = facade.choose_repository(routed.pk, text=AMBIGUOUS)

    assert (choice.repository, choice.needs_picker, choice.chosen_by_model) == ("acme/api", False, True)
    [call] = fake_upstream.calls_to("/chat/completions")
    assert call.body["model"] == "gpt-4o-mini" and call.body["temperature"] == 0 and not call.body.get("stream")
    assert "- acme/web\n- acme/api" in call.body["messages"][-1]["content"]
    gateway_server.wait_for_usage()
    [usage] = routing_usage(routed.project)
    assert usage.billable and usage.event == "$ai_generation"


def test_anthropic_routing_through_the_gateway(routed, gateway_server, fake_upstream, settings):
    settings.LLM_OPENAI_API_KEY = ""
    fake_upstream.respond("/messages", text=answer("acme/web", 0.75))

    choice = facade.choose_repository(routed.pk, text=AMBIGUOUS)

    assert (choice.repository, choice.chosen_by_model) == ("acme/web", True)
    [call] = fake_upstream.calls_to("/messages")
    assert call.body["model"] == "claude-haiku-4-5" and call.body["temperature"] == 0
    gateway_server.wait_for_usage()
    assert [u.billable for u in routing_usage(routed.project)] == [True]


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(dict(status=500), id="provider-error"),
        pytest.param(dict(status=429, error={"error": {"message": "slow down", "type": "rate_limit_error"}}), id="provider-429"),
        pytest.param(dict(text="acme/api, I'd say"), id="garbage"),
        pytest.param(dict(text=answer("evil/secret", 0.99)), id="unknown-repository"),
        pytest.param(dict(text=answer("acme/api", 0.4)), id="low-confidence"),
    ],
)
def test_failures_behind_the_gateway_lead_to_the_picker(routed, gateway_server, fake_upstream, script):
    fake_upstream.respond("/chat/completions", **script)

    choice = facade.choose_repository(routed.pk, text=AMBIGUOUS)

    assert choice.needs_picker and choice.repository is None and choice.repositories == REPOS
    assert len(fake_upstream.calls_to("/chat/completions")) == 1


def test_a_slow_model_times_out_into_the_picker(routed, gateway_server, fake_upstream, monkeypatch):
    monkeypatch.setattr(model_routing, "ROUTING_TIMEOUT_SECONDS", 0.5)
    fake_upstream.respond("/chat/completions", text=answer("acme/api"), first_byte_delay=2.0)

    started = time.monotonic()
    choice = facade.choose_repository(routed.pk, text=AMBIGUOUS)

    assert choice.needs_picker and choice.repository is None
    assert time.monotonic() - started < 1.8
    # The router gave up, the provider may still have charged: the gateway meters the call all the same.
    gateway_server.wait_for_usage(timeout=15)
    assert [u.billable for u in routing_usage(routed.project)] == [True]


def test_a_team_out_of_ai_credits_gets_the_gateways_429_and_the_picker(routed, gateway_server, fake_upstream):
    """The gateway refuses the billable routing call before the provider is reached; the router asks the user."""
    add_limited_tokens(QuotaResource.AI_CREDITS, {routed.project.api_token: time.time() + 3600})
    fake_upstream.respond("/chat/completions", text=answer("acme/api"))

    status, _ = model_routing._post_json(
        f"{gateway_server.url('slack_app_routing')}",
        {"Authorization": f"Bearer {model_routing.llm_gateway.mint_server_token(routed.project_id, 'slack_app_routing')}"},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 429
    choice = model_routing.pick_repository(project_id=routed.project_id, text=AMBIGUOUS, repositories=REPOS)
    assert (choice.repository, choice.reason) == (None, "gateway_429")
    assert facade.choose_repository(routed.pk, text=AMBIGUOUS).needs_picker
    assert fake_upstream.calls_to("/chat/completions") == []


def test_no_provider_configured_means_no_gateway_call(routed, gateway_server, fake_upstream, settings):
    settings.LLM_OPENAI_API_KEY = ""
    settings.LLM_ANTHROPIC_API_KEY = ""
    assert facade.choose_repository(routed.pk, text=AMBIGUOUS).needs_picker
    assert fake_upstream.calls == []
    gateway_server.wait_for_usage()
    assert routing_usage(routed.project) == []
