"""The repository router asks a small model through the LLM gateway when the rules cannot decide.

Invariants: the model's answer is used only when it names one of the project's
repositories with enough confidence; every failure of the gateway, the model or its
answer (an error, a 429 over quota, a timeout, garbage, an unknown repository, low
confidence) leads to the picker and never fails the mention; with no provider configured
no call is made at all; the rules (a repository named in the text, the only one, the
default) still decide first, without a model call.

Here the gateway is stood in for by `tests.llm_fakes.FakeUpstream` on loopback, which
answers `/llm/<product>/v1/chat/completions` and `/v1/messages` like the providers do (the
real gateway in front of a fake upstream is exercised in test_model_routing_gateway.py).
"""
from __future__ import annotations

import json

import pytest

from products.slack_app import facade, model_routing
from tests.llm_fakes import FakeUpstream

pytestmark = pytest.mark.django_db

REPOS = ["acme/web", "acme/api"]  # the `integration` fixture's repositories (no default)
AMBIGUOUS = "<@UBOT> the build is red, please fix it"


def answer(repository, confidence=0.93) -> str:
    return json.dumps({"repository": repository, "confidence": confidence})


@pytest.fixture(scope="module")
def _stand_in():
    fake = FakeUpstream()
    yield fake
    fake.close()


@pytest.fixture
def gateway(_stand_in, settings, monkeypatch):
    """The gateway stood in for on loopback, OpenAI configured, tokens minted by a recorder."""
    _stand_in.reset()
    settings.LLM_GATEWAY_URL = _stand_in.base_url
    settings.LLM_OPENAI_API_KEY = "sk-upstream-openai"
    settings.LLM_ANTHROPIC_API_KEY = ""
    settings.LLM_ROUTING_MODEL = ""
    minted: list[tuple] = []

    def mint(project_id, product, *, run_id=None, ttl=None):
        minted.append((project_id, product))
        return f"phs_test_{project_id}_{product}"

    monkeypatch.setattr(model_routing.llm_gateway, "mint_server_token", mint)
    _stand_in.minted = minted
    return _stand_in


def routing_calls(fake):
    return [c for c in fake.calls if c.path.startswith("/llm/")]


def choose(integration, text=AMBIGUOUS):
    return facade.choose_repository(integration.pk, text=text)


def assert_picker(choice):
    assert choice.needs_picker and choice.repository is None and not choice.chosen_by_model
    assert choice.repositories == REPOS


# --- The model's choice is used -------------------------------------------------------------------


def test_the_models_choice_becomes_the_repository(integration, gateway):
    gateway.respond("/chat/completions", text=answer("acme/api"))

    choice = choose(integration)

    assert (choice.repository, choice.needs_picker, choice.chosen_by_model) == ("acme/api", False, True)
    [call] = routing_calls(gateway)
    assert call.path == "/llm/slack_app_routing/v1/chat/completions"
    assert call.credential == f"phs_test_{integration.project_id}_slack_app_routing"
    assert gateway.minted == [(integration.project_id, "slack_app_routing")]
    body = call.body
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0 and body["max_tokens"] <= 100
    assert body["response_format"] == {"type": "json_object"} and not body.get("stream")
    question = body["messages"][-1]["content"]
    assert "- acme/web\n- acme/api" in question and "the build is red" in question and "<@UBOT>" not in question


def test_anthropic_is_asked_through_messages_when_only_it_is_configured(integration, gateway, settings):
    settings.LLM_OPENAI_API_KEY = ""
    settings.LLM_ANTHROPIC_API_KEY = "sk-ant-upstream"
    gateway.respond("/messages", text="```json\n" + answer("acme/web", 0.8) + "\n```")

    choice = choose(integration)

    assert (choice.repository, choice.chosen_by_model) == ("acme/web", True)
    [call] = routing_calls(gateway)
    assert call.path == "/llm/slack_app_routing/v1/messages"
    assert {k.lower(): v for k, v in call.headers.items()}["x-api-key"] == f"phs_test_{integration.project_id}_slack_app_routing"
    assert call.body["model"] == "claude-haiku-4-5" and call.body["temperature"] == 0 and "system" in call.body


def test_the_mention_workflow_id_is_the_gateway_trace_id(integration, gateway):
    gateway.respond("/chat/completions", text=answer("acme/api"))
    facade.choose_repository(integration.pk, text=AMBIGUOUS, workflow_id="posthog-code-mention-T0TEST:Ev0TRACE")
    [call] = routing_calls(gateway)
    assert {k.lower(): v for k, v in call.headers.items()}["x-trace-id"] == "posthog-code-mention-T0TEST:Ev0TRACE"


def test_the_routing_model_setting_names_the_model(integration, gateway, settings):
    settings.LLM_ROUTING_MODEL = "gpt-4.1-nano"
    gateway.respond("/chat/completions", text=answer("ACME/API"))  # spelled differently: ours is used
    assert choose(integration).repository == "acme/api"
    assert routing_calls(gateway)[0].body["model"] == "gpt-4.1-nano"


# --- Every failure leads to the picker ---------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(dict(status=500), id="upstream-error"),
        pytest.param(dict(status=502, error={"error": {"message": "bad gateway", "type": "api_error"}}), id="bad-gateway"),
        pytest.param(
            dict(status=429, error={"error": {"message": "Out of AI credits", "type": "rate_limit_error", "code": "ai_credits"}}),
            id="gateway-429-over-quota",
        ),
        pytest.param(dict(text="I think it is probably the web one."), id="garbage"),
        pytest.param(dict(text='{"repository": "acme/web"}'), id="no-confidence"),
        pytest.param(dict(text='{"repository": "acme/web", "confidence": "high"}'), id="confidence-not-a-number"),
        pytest.param(dict(text='{"repository": "acme/web", "confidence": 7}'), id="confidence-out-of-range"),
        pytest.param(dict(text='{"repository": "acme/web", "confidence": NaN}'), id="confidence-nan"),
        pytest.param(dict(text='["acme/web"]'), id="not-an-object"),
        pytest.param(dict(text=answer("evil/secret-repo", 0.99)), id="unknown-repository"),
        pytest.param(dict(text=answer("acme/web-two", 0.99)), id="near-miss-repository"),
        pytest.param(dict(text=answer("acme/web", 0.5)), id="low-confidence"),
        pytest.param(dict(text=answer(None, 0.9)), id="model-says-none"),
        pytest.param(dict(text=answer(["acme/web"], 0.9)), id="repository-not-a-string"),
    ],
)
def test_any_failure_or_doubt_of_the_model_leads_to_the_picker(integration, gateway, script):
    gateway.respond("/chat/completions", **script)
    assert_picker(choose(integration))
    assert len(routing_calls(gateway)) == 1


def test_an_unparsable_gateway_response_leads_to_the_picker(integration, gateway, monkeypatch):
    monkeypatch.setattr(model_routing, "_post_json", lambda url, headers, body: (200, "<html>proxy error</html>"))
    assert_picker(choose(integration))


def test_a_slow_gateway_times_out_into_the_picker(integration, gateway, monkeypatch):
    monkeypatch.setattr(model_routing, "ROUTING_TIMEOUT_SECONDS", 0.3)
    gateway.respond("/chat/completions", text=answer("acme/api"), first_byte_delay=1.5)
    choice = model_routing.pick_repository(project_id=integration.project_id, text=AMBIGUOUS, repositories=REPOS)
    assert (choice.repository, choice.reason) == (None, "timeout")
    gateway.respond("/chat/completions", text=answer("acme/api"), first_byte_delay=1.5)
    assert_picker(choose(integration))


def test_an_unreachable_gateway_leads_to_the_picker(integration, gateway, settings):
    from tests.conftest import free_port

    settings.LLM_GATEWAY_URL = f"http://127.0.0.1:{free_port()}"
    choice = model_routing.pick_repository(project_id=integration.project_id, text=AMBIGUOUS, repositories=REPOS)
    assert (choice.repository, choice.reason) == (None, "unreachable")
    assert_picker(choose(integration))


def test_a_token_that_cannot_be_minted_leads_to_the_picker_without_a_call(integration, gateway, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no signing key")

    monkeypatch.setattr(model_routing.llm_gateway, "mint_server_token", refuse)
    assert_picker(choose(integration))
    assert routing_calls(gateway) == []


def test_no_provider_configured_means_no_call_at_all(integration, gateway, settings, monkeypatch):
    settings.LLM_OPENAI_API_KEY = ""
    settings.LLM_ANTHROPIC_API_KEY = ""
    assert_picker(choose(integration))
    assert routing_calls(gateway) == [] and gateway.minted == []


# --- The rules still decide first ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, repositories, default, expected",
    [
        pytest.param("fix the login page in acme/api", REPOS, None, "acme/api", id="named-in-the-text"),
        pytest.param("the build is red", ["acme/solo"], None, "acme/solo", id="the-only-one"),
        pytest.param("the build is red", REPOS, "acme/web", "acme/web", id="the-default"),
        pytest.param("write a haiku", [], None, None, id="no-repositories"),
    ],
)
def test_rules_that_decide_make_no_model_call(integration, gateway, text, repositories, default, expected):
    integration.config = {**integration.config, "repositories": repositories, "default_repository": default}
    integration.save()
    choice = choose(integration, text)
    assert (choice.repository, choice.needs_picker, choice.chosen_by_model) == (expected, False, False)
    assert routing_calls(gateway) == []
