"""Metering by the gateway itself: every call that reached a provider, success or failure, is one usage event.

The registry, not the caller, decides what is billable; tokens come from the provider's own
usage (the final SSE chunk for streams); cost from genai-prices or an operator's override.
"""
from __future__ import annotations

import json
import socket
import time
from decimal import Decimal

import genai_prices
import httpx
import pytest

from products.billing.facade import credits_for_cost
from products.llm_gateway.facade import mint_server_token
from products.llm_gateway.models import PriceOverride
from tests.products.llm_gateway.gateway_support import (
    ANTHROPIC_BODY,
    OPENAI_BODY,
    chat,
    member,  # noqa: F401 (fixture)
    message,
    recorded,
)


def genai_cost(provider: str, model: str, input_tokens: int, output_tokens: int, cache_read: int = 0) -> Decimal:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read or None)
    return Decimal(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price).quantize(Decimal("1e-9"))


def test_a_successful_call_is_recorded_with_tokens_cost_credits_latency_and_trace(gateway_server, fake_upstream, member):
    fake_upstream.defaults.cache_read_tokens = 10
    response = chat(gateway_server, "posthog_code", member.key, x_trace_id="trace-abc")
    assert response.status_code == 200
    [event] = recorded(gateway_server)
    assert (event.product, event.model, event.provider) == ("posthog_code", "gpt-4o-mini", "openai")
    assert (event.input_tokens, event.output_tokens, event.is_error) == (42, 17, False)
    expected = genai_cost("openai", "gpt-4o-mini", 42, 17, cache_read=10)
    assert event.cost_usd == expected > 0
    assert event.credits == credits_for_cost(expected)
    props = event.properties
    assert props["$ai_trace_id"] == "trace-abc"
    assert props["$ai_price_source"] == "genai-prices"
    assert props["$ai_cache_read_input_tokens"] == 10
    assert 0 < props["$ai_latency"] < 10 and 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]
    assert props["$ai_is_error"] is False and "$ai_error" not in props


def test_a_call_without_a_trace_id_gets_one(gateway_server, fake_upstream, member):
    response = chat(gateway_server, "posthog_code", member.key)
    [event] = recorded(gateway_server)
    assert len(event.properties["$ai_trace_id"]) == 32
    assert response.headers["x-trace-id"] == event.properties["$ai_trace_id"]


def test_anthropic_usage_counts_cache_reads_as_input_for_the_price(gateway_server, fake_upstream, member):
    fake_upstream.defaults.cache_read_tokens = 100
    assert message(gateway_server, "posthog_code", member.key).status_code == 200
    [event] = recorded(gateway_server)
    assert (event.input_tokens, event.output_tokens) == (42, 17)  # as Anthropic reports it: uncached input
    assert event.cost_usd == genai_cost("anthropic", "claude-sonnet-4-5", 142, 17, cache_read=100)


@pytest.mark.parametrize("product, billable", [("slack_app", True), ("posthog_code", False)])
def test_billable_is_the_registrys_whatever_the_caller_sends_in_headers_or_body(gateway_server, fake_upstream, accounts, member, product, billable):
    credential = mint_server_token(member.project.pk, product) if product == "slack_app" else member.key
    spoof = {
        "$ai_billable": not billable,
        "$ai_product": "posthog_code" if billable else "slack_app",
        "$ai_total_cost_usd": 0,
        "$ai_error": "pretend",
        "$ai_session_id": "s-1",
        "team": "web",
    }
    body = {**ANTHROPIC_BODY, "posthog_properties": spoof}
    response = message(gateway_server, product, credential, body, x_posthog_properties=json.dumps(spoof))
    assert response.status_code == 200, response.text
    [event] = recorded(gateway_server)
    assert event.billable is billable and event.properties["$ai_billable"] is billable
    assert event.product == product and event.properties["$ai_product"] == product
    assert event.properties["team"] == "web" and event.properties["$ai_session_id"] == "s-1"  # the caller's own are kept
    assert "$ai_error" not in event.properties and event.properties["$ai_total_cost_usd"] > 0  # ours are not spoofed
    [call] = fake_upstream.calls_to("/v1/messages")
    assert "posthog_properties" not in call.body
    assert "x-posthog-properties" not in {k.lower() for k in call.headers}


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_an_upstream_failure_is_recorded_as_an_error_event(gateway_server, fake_upstream, member, call, shape):
    fake_upstream.respond("/messages" if shape == "anthropic" else "/chat/completions", status=500)
    assert call(gateway_server, "posthog_code", member.key).status_code == 500
    [event] = recorded(gateway_server)
    assert event.is_error and event.properties["$ai_is_error"] is True
    assert "scripted failure" in event.properties["$ai_error"]
    assert event.properties["$ai_http_status"] == 500
    assert (event.input_tokens, event.output_tokens, event.cost_usd) == (0, 0, 0)


def test_a_streamed_upstream_error_is_recorded_as_an_error_event(gateway_server, fake_upstream, member):
    fake_upstream.respond("/messages", status=429, error={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    response = message(gateway_server, "posthog_code", member.key, {**ANTHROPIC_BODY, "stream": True})
    assert response.status_code == 429 and response.json()["error"]["message"] == "slow down"
    [event] = recorded(gateway_server)
    assert event.is_error and "slow down" in event.properties["$ai_error"]


def test_a_stream_the_upstream_cuts_off_is_an_error_with_the_usage_seen(gateway_server, fake_upstream, member):
    fake_upstream.respond("/messages", cut_after_chunks=4)
    response = message(gateway_server, "posthog_code", member.key, {**ANTHROPIC_BODY, "stream": True})
    assert response.status_code == 200  # the stream had begun
    assert '"type": "error"' in response.text  # the client is told, in Anthropic's streaming shape
    [event] = recorded(gateway_server)
    assert event.is_error
    assert event.input_tokens == 42  # from message_start, which did arrive


@pytest.mark.parametrize("shape", ["anthropic", "openai"])
def test_a_client_that_disconnects_mid_stream_is_recorded_with_the_usage_seen_so_far(gateway_server, fake_upstream, member, shape):
    fake_upstream.defaults.chunk_delay = 0.3
    fake_upstream.defaults.chunks = 20
    path, body = ("messages", ANTHROPIC_BODY) if shape == "anthropic" else ("chat/completions", OPENAI_BODY)
    with httpx.stream("POST", gateway_server.url("posthog_code", path), headers={"x-api-key": member.key}, json={**body, "stream": True}, timeout=30) as response:
        assert response.status_code == 200
        received = b""
        for chunk in response.iter_bytes():
            received += chunk
            if received.count(b"\n\n") >= 4:
                break
    # leaving the block closes the connection half way through a 6-second stream
    started = time.monotonic()
    [event] = recorded(gateway_server)
    assert time.monotonic() - started < 5  # recorded on disconnect, not when the upstream would have ended
    assert event.properties["$ai_client_disconnected"] is True
    assert event.properties["$ai_time_to_first_token"] > 0
    if shape == "anthropic":
        assert (event.input_tokens, event.output_tokens) == (42, 1)  # message_start's usage: all that was seen
        assert event.cost_usd == genai_cost("anthropic", "claude-sonnet-4-5", 42, 1)
    else:
        assert (event.input_tokens, event.output_tokens) == (0, 0)  # OpenAI reports usage only at the end


def test_an_override_replaces_the_package_price_exact_name_over_prefix(gateway_server, fake_upstream, member):
    PriceOverride.objects.create(provider="openai", model="gpt-4o", is_prefix=True, input_usd_per_mtok=Decimal("100"), output_usd_per_mtok=Decimal("100"))
    PriceOverride.objects.create(
        provider="openai", model="gpt-4o-mini", input_usd_per_mtok=Decimal("2"), output_usd_per_mtok=Decimal("8"), cache_read_usd_per_mtok=Decimal("1")
    )
    fake_upstream.defaults.cache_read_tokens = 2
    assert chat(gateway_server, "posthog_code", member.key).status_code == 200
    assert chat(gateway_server, "posthog_code", member.key, {**OPENAI_BODY, "model": "gpt-4o-2024-05-13"}).status_code == 200
    exact, prefix = recorded(gateway_server)
    assert exact.cost_usd == (Decimal(40 * 2 + 2 * 1 + 17 * 8) / 1_000_000).quantize(Decimal("1e-9"))
    assert exact.properties["$ai_price_source"] == "override"
    assert prefix.cost_usd == (Decimal((42 + 17) * 100) / 1_000_000).quantize(Decimal("1e-9"))


def test_a_model_no_price_table_knows_costs_nothing_and_says_so(gateway_server, fake_upstream, member):
    assert chat(gateway_server, "posthog_code", member.key, {**OPENAI_BODY, "model": "zz-private-model"}).status_code == 200
    [event] = recorded(gateway_server)
    assert event.cost_usd == 0 and event.properties["$ai_price_source"] == "unknown"


def test_recording_happens_after_the_answer_and_is_waited_for(gateway_server, fake_upstream, member):
    """The client has its answer before the usage is stored; `wait_for_usage` is how a test (or shutdown) waits."""
    for _ in range(5):
        assert chat(gateway_server, "posthog_code", member.key).status_code == 200
    assert len(recorded(gateway_server)) == 5


def test_a_client_that_gives_up_on_a_plain_call_is_recorded_as_an_error(gateway_server, fake_upstream, member):
    """A caller's timeout must not leave the call unrecorded (nor the gateway waiting on it forever)."""
    fake_upstream.respond("/chat/completions", first_byte_delay=2.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway_server.url("posthog_code"), headers={"x-api-key": member.key}, json=OPENAI_BODY, timeout=0.5)
    [event] = recorded(gateway_server)
    assert event.is_error and event.properties["$ai_client_disconnected"] is True
    assert "went away" in event.properties["$ai_error"]
