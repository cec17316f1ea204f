"""The gateway proxies both provider APIs, plain and streamed, to the configured upstream with our key.

Served for real (uvicorn on loopback) against the fake providers of tests/llm_fakes.py.
"""
from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import FAKE_PROVIDER_KEY
from tests.products.llm_gateway.gateway_support import (
    ANTHROPIC_BODY,
    OPENAI_BODY,
    chat,
    member,  # noqa: F401 (fixture)
    message,
    recorded,
    sse_events,
)


def test_openai_chat_completion_is_proxied_with_our_key_not_the_callers(gateway_server, fake_upstream, member):
    response = chat(gateway_server, "posthog_code", member.key, x_trace_id="trace-123", connection="keep-alive")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("Hello from the fake model")
    assert response.headers["x-trace-id"] == "trace-123"
    [call] = fake_upstream.calls_to("/v1/chat/completions")
    assert call.credential == FAKE_PROVIDER_KEY  # the fake refuses any other key, too
    sent = {k.lower() for k in call.headers}
    assert member.key not in json.dumps(call.headers)
    assert not sent & {"x-api-key", "x-trace-id", "x-project-id", "cookie"}
    assert call.body == OPENAI_BODY


def test_anthropic_message_is_proxied_with_our_key_and_a_default_version(gateway_server, fake_upstream, member):
    response = message(gateway_server, "posthog_code", member.key)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"].startswith("Hello from the fake model")
    [call] = fake_upstream.calls_to("/v1/messages")
    assert call.credential == FAKE_PROVIDER_KEY
    assert {k.lower(): v for k, v in call.headers.items()}["anthropic-version"] == "2023-06-01"
    assert "authorization" not in {k.lower() for k in call.headers}


def test_an_openai_stream_reaches_the_client_chunk_by_chunk_without_the_usage_chunk_it_did_not_ask_for(
    gateway_server, fake_upstream, member
):
    """Tokens are relayed as the upstream sends them: the first arrives while the upstream is still writing."""
    fake_upstream.defaults.chunk_delay = 0.3
    body = {**OPENAI_BODY, "stream": True}
    started = time.monotonic()
    arrivals, payload = [], b""
    with httpx.stream("POST", gateway_server.url("posthog_code"), headers={"x-api-key": member.key}, json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            arrivals.append(time.monotonic() - started)
            payload += chunk
    ended = time.monotonic() - started
    assert len(arrivals) >= 3
    assert arrivals[0] < ended - 1.0, (arrivals, ended)  # 8 chunks 0.3 s apart: the first came long before the end
    events = sse_events(payload.decode())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)  # the usage-only chunk the gateway asked for is not shown
    [call] = fake_upstream.calls_to("/v1/chat/completions")
    assert call.body["stream_options"] == {"include_usage": True}
    [event] = recorded(gateway_server)
    assert (event.input_tokens, event.output_tokens) == (42, 17)  # from the chunk the client did not see


def test_an_openai_stream_keeps_the_usage_chunk_when_the_client_asked_for_it(gateway_server, fake_upstream, member):
    body = {**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}}
    response = chat(gateway_server, "posthog_code", member.key, body)
    chunks = [json.loads(e) for e in sse_events(response.text)[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 42


def test_an_anthropic_stream_reaches_the_client_event_by_event(gateway_server, fake_upstream, member):
    fake_upstream.defaults.chunk_delay = 0.2
    started = time.monotonic()
    arrivals, payload = [], b""
    body = {**ANTHROPIC_BODY, "stream": True}
    with httpx.stream("POST", gateway_server.url("posthog_code", "messages"), headers={"x-api-key": member.key}, json=body, timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            arrivals.append(time.monotonic() - started)
            payload += chunk
    ended = time.monotonic() - started
    assert arrivals[0] < ended - 1.0, (arrivals, ended)
    kinds = [json.loads(e)["type"] for e in sse_events(payload.decode())]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    [event] = recorded(gateway_server)
    assert (event.input_tokens, event.output_tokens, event.is_error) == (42, 17, False)


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_an_upstream_error_is_passed_through_with_its_status_and_body(gateway_server, fake_upstream, member, call, shape):
    error = (
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        if shape == "anthropic"
        else {"error": {"message": "The server is overloaded", "type": "server_error", "param": None, "code": None}}
    )
    fake_upstream.respond("/messages" if shape == "anthropic" else "/chat/completions", status=529, error=error)
    response = call(gateway_server, "posthog_code", member.key)
    assert response.status_code == 529
    assert response.json() == error


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_a_provider_without_a_key_is_a_503_in_the_callers_shape(gateway_server, fake_upstream, member, settings, call, shape):
    settings.LLM_OPENAI_API_KEY = ""
    settings.LLM_ANTHROPIC_API_KEY = ""
    response = call(gateway_server, "posthog_code", member.key)
    assert response.status_code == 503
    body = response.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        assert f"LLM_{shape.upper()}_API_KEY" in body["error"]["message"]
    else:
        assert body["error"]["code"] == "provider_not_configured" and "LLM_OPENAI_API_KEY" in body["error"]["message"]
    assert fake_upstream.calls == []


def test_an_upstream_that_cannot_be_reached_is_a_502(gateway_server, fake_upstream, member, settings):
    from tests.conftest import free_port

    settings.LLM_OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}"
    response = chat(gateway_server, "posthog_code", member.key)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    [event] = recorded(gateway_server)
    assert event.is_error and event.properties["$ai_http_status"] == 502


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_an_unknown_product_is_a_404_naming_the_known_ones(gateway_server, fake_upstream, member, call, shape):
    response = call(gateway_server, "mystery", member.key)
    assert response.status_code == 404
    text = response.json()["error"]["message"]
    for name in ("posthog_code", "slack_app", "slack_app_routing", "twig"):
        assert name in text
    if shape == "anthropic":
        assert response.json()["type"] == "error" and response.json()["error"]["type"] == "not_found_error"


def test_an_alias_resolves_through_the_registry(gateway_server, fake_upstream, member):
    response = chat(gateway_server, "twig", member.key)
    assert response.status_code == 200
    [event] = recorded(gateway_server)
    assert event.product == "posthog_code"


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_a_model_the_product_may_not_use_is_a_400_naming_the_allowed_ones(gateway_server, fake_upstream, accounts, call, shape):
    from products.llm_gateway.facade import mint_server_token

    project = accounts.project()
    token = mint_server_token(project.pk, "slack_app_routing")
    response = call(gateway_server, "slack_app_routing", token, {**(OPENAI_BODY if shape == "openai" else ANTHROPIC_BODY), "model": "gpt-4.5-preview"})
    assert response.status_code == 400
    text = response.json()["error"]["message"]
    assert "gpt-4.5-preview" in text and "gpt-4o-mini*" in text
    assert fake_upstream.calls == []


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{", b'{"model": "gpt-4o-mini", "temperature": NaN}', rb'{"model": "gpt-4o-mini\u0000"}'])
def test_a_body_that_is_not_a_json_object_we_accept_is_a_400(gateway_server, fake_upstream, member, raw):
    response = httpx.post(gateway_server.url("posthog_code"), headers={"x-api-key": member.key}, content=raw)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert fake_upstream.calls == []


def test_models_lists_what_the_product_may_use(gateway_server, fake_upstream, accounts):
    from products.llm_gateway.facade import mint_server_token

    project = accounts.project()
    response = httpx.get(gateway_server.url("slack_app_routing", "models"), headers={"authorization": f"Bearer {mint_server_token(project.pk, 'slack_app_routing')}"})
    assert response.status_code == 200
    ids = {m["id"] for m in response.json()["data"]}
    assert "gpt-4o-mini" in ids and "claude-sonnet-4-5" in ids and "gpt-4.5-preview" not in ids
    assert httpx.get(gateway_server.url("slack_app_routing", "models")).status_code == 401


def test_the_gateway_stays_out_of_the_openapi_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert not [p for p in schema["paths"] if p.startswith("/llm/")]
