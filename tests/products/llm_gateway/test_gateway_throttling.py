"""Throttles end to end: the gateway served for real (uvicorn on loopback) refuses with a 429.

Invariants: an over-quota team is refused for a billable product in the caller's API
shape with a Retry-After, before any upstream call, whether its credential came as
`x-api-key` or `Authorization: Bearer` (the seed's first bypass); with the http quota
source, a credential the quota endpoint refuses (403: `llm_gateway:read` without
PostHog's `project:read`) is refused, never treated as "not limited" (the second); a
non-billable product is never refused by the credit throttles; the live counter refuses
within one call of crossing the allowance, before any recomputation.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from decimal import Decimal

import httpx
import pytest

from products.billing import facade as billing
from products.billing import quota_limiting as ql
from products.billing.models import UsageEvent
from products.billing.quota_limiting import QuotaResource
from products.billing.recompute import update_all_orgs_billing_quotas
from products.llm_gateway import products as registry
from products.llm_gateway.models import PriceOverride
from products.llm_gateway.tokens import mint_server_token
from tests.products.billing.usage_helpers import make_plan
from tests.products.llm_gateway.gateway_support import (
    ANTHROPIC_BODY,
    OPENAI_BODY,
    member,  # noqa: F401 (fixture)
)

from .quota_support import RemoteQuota, refuse_like_posthog

AI = QuotaResource.AI_CREDITS
AGENT_BODY = {**OPENAI_BODY, "model": "gpt-4o-mini"}
# A billable product that personal keys may call, as PostHog's are: both billable products
# here (slack_app, slack_app_routing) take server tokens only.
BILLABLE_FOR_KEYS = "throttle_test_billable"


@pytest.fixture
def billable_for_keys(monkeypatch):
    monkeypatch.setitem(
        registry.PRODUCTS, BILLABLE_FOR_KEYS, registry.ProductConfig(name=BILLABLE_FOR_KEYS, billable=True)
    )
    return BILLABLE_FOR_KEYS


def limit(project, seconds=3600) -> int:
    until = int(time.time() + seconds)
    ql.add_limited_tokens(AI, {project.api_token: until})
    return until


def call(gateway_server, product, credential, *, header="x-api-key", shape="openai", body=None):
    headers = {"x-api-key": credential} if header == "x-api-key" else {"authorization": f"Bearer {credential}"}
    path = "messages" if shape == "anthropic" else "chat/completions"
    payload = body or (ANTHROPIC_BODY if shape == "anthropic" else AGENT_BODY)
    return httpx.post(gateway_server.url(product, path), headers=headers, json=payload, timeout=30)


def assert_refused(response, scope, shape="openai"):
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error" and body["error"]["message"]
    else:
        assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == scope and body["error"]["message"]
    return body


# --- redis source (the default) ------------------------------------------------------------


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_an_over_quota_team_is_refused_for_a_billable_product_with_a_server_token(
    gateway_server, fake_upstream, member, header, shape
):
    until = limit(member.project, 7200)
    token = mint_server_token(member.project.id, "slack_app")
    response = call(gateway_server, "slack_app", token, header=header, shape=shape)
    body = assert_refused(response, "ai_credits", shape)
    assert 7100 <= int(response.headers["retry-after"]) <= until - time.time() + 2
    assert "AI credits" in (body["error"]["message"])
    assert fake_upstream.calls == []  # refused before any upstream call: nothing spent


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
def test_an_over_quota_team_is_refused_for_a_billable_product_with_a_personal_key(
    gateway_server, fake_upstream, member, billable_for_keys, header
):
    limit(member.project)
    assert_refused(call(gateway_server, billable_for_keys, member.key, header=header), "ai_credits")
    assert fake_upstream.calls == []


def test_the_same_team_under_quota_is_served(gateway_server, fake_upstream, member, billable_for_keys):
    assert call(gateway_server, billable_for_keys, member.key).status_code == 200
    token = mint_server_token(member.project.id, "slack_app")
    assert call(gateway_server, "slack_app", token, header="bearer").status_code == 200


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
def test_a_non_billable_product_is_not_refused_by_the_credit_throttles(gateway_server, fake_upstream, member, redis_db, header):
    limit(member.project)
    redis_db.hset(f"@posthog/ai-credits-live/{member.project.organization_id}",
                  mapping={"used": 10**6, "limit": 1, "period_end": int(time.time()) + 86400})
    response = call(gateway_server, "posthog_code", member.key, header=header)
    assert response.status_code == 200, response.text
    assert len(fake_upstream.calls) == 1


def test_with_redis_unreachable_billable_calls_are_refused_and_non_billable_ones_served(
    gateway_server, fake_upstream, member, settings
):
    """The redis quota source fails closed (nothing after the gateway checks again); the extra guards fail open."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = 0.3
    token = mint_server_token(member.project.id, "slack_app")
    body = assert_refused(call(gateway_server, "slack_app", token), "ai_credits")
    assert "temporarily unavailable" in body["error"]["message"]
    assert fake_upstream.calls == []
    assert call(gateway_server, "posthog_code", member.key).status_code == 200


def test_live_credits_refuse_within_one_call_of_crossing_the_allowance(gateway_server, fake_upstream, member):
    """Each call costs the same; the allowance is crossed by the second: the third is refused, no recomputation between."""
    PriceOverride.objects.create(provider="openai", model="gpt-4o-mini", input_usd_per_mtok=Decimal("100000"),
                                 output_usd_per_mtok=Decimal("0"))
    org_id = member.project.organization_id
    token = mint_server_token(member.project.id, "slack_app")
    # Learn one call's credits, then set the allowance to just under two calls' worth.
    assert call(gateway_server, "slack_app", token).status_code == 200
    gateway_server.wait_for_usage()
    per_call = UsageEvent.objects.get().credits
    assert per_call > 0
    make_plan(member.project.organization, ai_credits=2 * per_call - 1)
    update_all_orgs_billing_quotas(send_alerts=False)  # used = 1 call, limit = 2 calls - 1
    assert billing.live_credits(org_id).used == per_call

    assert call(gateway_server, "slack_app", token).status_code == 200  # crosses the allowance
    gateway_server.wait_for_usage()
    assert billing.live_credits(org_id).used == 2 * per_call
    response = call(gateway_server, "slack_app", token)
    assert_refused(response, "live_credits")
    assert not ql.list_limited_tokens(AI)  # the quota sets did not know yet: only the live counter did
    assert len(fake_upstream.calls) == 2


def test_cost_throttles_refuse_through_the_gateway(gateway_server, fake_upstream, member, settings):
    settings.LLM_GATEWAY_USER_BURST_USD = 1
    PriceOverride.objects.create(provider="openai", model="gpt-4o-mini", input_usd_per_mtok=Decimal("100000"),
                                 output_usd_per_mtok=Decimal("0"))
    assert call(gateway_server, "posthog_code", member.key).status_code == 200  # $4.20 > $1
    gateway_server.wait_for_usage()
    body = assert_refused(call(gateway_server, "posthog_code", member.key), "user_cost")
    assert "burst spending limit of $1.00" in body["error"]["message"]


# --- http source ---------------------------------------------------------------------------


@pytest.fixture
def remote(live_server, settings):
    """The quota source is a remote deployment: a loopback stand-in in front of the real endpoint."""
    try:
        urllib.request.urlopen(f"{live_server.url}/api/projects/1/quota_limits/", timeout=30)
    except urllib.error.HTTPError:
        pass
    stand_in = RemoteQuota(upstream=live_server.url).start()
    settings.LLM_GATEWAY_QUOTA_SOURCE = "http"
    settings.LLM_GATEWAY_QUOTA_URL = stand_in.base_url
    settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = 5
    yield stand_in
    stand_in.stop()


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
def test_http_source_a_key_without_project_read_is_refused_not_treated_as_not_limited(
    gateway_server, fake_upstream, member, billable_for_keys, remote, header
):
    """The remote (like PostHog's) wants project:read; the key has llm_gateway:read only: 403 -> refused."""
    refuse_like_posthog(remote)
    body = assert_refused(call(gateway_server, billable_for_keys, member.key, header=header), "ai_credits")
    assert "may not read this project's quota" in body["error"]["message"]
    assert fake_upstream.calls == []
    assert remote.count() == 1
    assert_refused(call(gateway_server, billable_for_keys, member.key, header=header), "ai_credits")
    assert remote.count() == 2  # asked again: a refusal is never cached


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
def test_http_source_reads_the_real_endpoint_with_the_callers_key(
    gateway_server, fake_upstream, member, billable_for_keys, remote, accounts, header
):
    assert call(gateway_server, billable_for_keys, member.key, header=header).status_code == 200
    [seen] = remote.requests
    # The caller's own key (the same credential the gateway authenticated), in the header it came in.
    if header == "x-api-key":
        assert seen.headers["x-api-key"] == member.key and "authorization" not in seen.headers
    else:
        assert seen.headers["authorization"] == f"Bearer {member.key}" and "x-api-key" not in seen.headers
    limit(member.project)  # cached "not limited" holds for this key for 30 s, so ask with a second key
    _, second = accounts.key(member.user, scopes=["llm_gateway:read"])
    assert_refused(call(gateway_server, billable_for_keys, second, header=header), "ai_credits")
    assert len(fake_upstream.calls) == 1


def test_http_source_a_non_billable_product_never_asks(gateway_server, fake_upstream, member, remote):
    refuse_like_posthog(remote)
    assert call(gateway_server, "posthog_code", member.key).status_code == 200
    assert remote.count() == 0


def test_http_source_reads_the_remote_quota_with_the_callers_server_token(gateway_server, fake_upstream, member, remote):
    """The server-only products' callers present server tokens: the remote quota endpoint accepts them for their project."""
    token = mint_server_token(member.project.id, "slack_app")
    assert call(gateway_server, "slack_app", token).status_code == 200
    [seen] = remote.requests
    assert seen.headers["x-api-key"] == token
    limit(member.project)
    refused_token = mint_server_token(member.project.id, "slack_app", run_id=2)  # another credential: not cached
    assert_refused(call(gateway_server, "slack_app", refused_token), "ai_credits")
    assert len(fake_upstream.calls) == 1
