"""Who may call the gateway, for which project: one credential (x-api-key first), checked once.

The review of PostHog's gateway found a key sent as `x-api-key` skipping a check that read
`Authorization`; here the credential is read in one place and that value is the one every
check of the request uses.
"""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from products.llm_gateway.facade import mint_server_token
from tests.products.llm_gateway.gateway_support import chat, member, message, recorded  # noqa: F401


def test_x_api_key_wins_over_authorization_when_both_are_sent(gateway_server, fake_upstream, member):
    # The valid key in x-api-key, garbage in Authorization: the call goes through on x-api-key.
    ok = chat(gateway_server, "posthog_code", member.key, authorization="Bearer phx_not-a-key")
    assert ok.status_code == 200, ok.text
    # Garbage in x-api-key, the valid key in Authorization: judged by x-api-key, refused.
    refused = chat(gateway_server, "posthog_code", "phx_not-a-key", authorization=f"Bearer {member.key}")
    assert refused.status_code == 401


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_either_header_alone_carries_the_key(gateway_server, fake_upstream, member, header):
    value = member.key if header == "x-api-key" else f"Bearer {member.key}"
    response = httpx.post(gateway_server.url("posthog_code"), headers={header: value}, json={"model": "gpt-4o-mini", "messages": []})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_no_credential_is_a_401_in_the_callers_shape(gateway_server, fake_upstream, call, shape):
    response = call(gateway_server, "posthog_code", None)
    assert response.status_code == 401
    body = response.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    else:
        assert body["error"]["type"] == "authentication_error" and body["error"]["code"] == "invalid_api_key"
    assert fake_upstream.calls == []


@pytest.mark.parametrize("credential", ["phx_unknown", "sk-something", "phs_garbage", "Bearer"])
def test_an_invalid_credential_is_a_401(gateway_server, fake_upstream, credential):
    assert chat(gateway_server, "posthog_code", credential).status_code == 401
    # the credential is judged first, whatever project header comes with it
    assert chat(gateway_server, "posthog_code", credential, x_project_id="not-a-number").status_code == 401


def test_a_key_of_an_inactive_user_is_a_401(gateway_server, fake_upstream, member):
    member.user.is_active = False
    member.user.save()
    assert chat(gateway_server, "posthog_code", member.key).status_code == 401


@pytest.mark.parametrize("scopes, status", [(["project:read"], 403), (["task:write"], 403), (["llm_gateway:write"], 200), (["*"], 200)])
def test_a_personal_key_needs_llm_gateway_read_write_implying_it(gateway_server, fake_upstream, accounts, scopes, status):
    org = accounts.organization()
    accounts.project(org)
    _, key = accounts.key(accounts.user(org), scopes=scopes)
    response = chat(gateway_server, "posthog_code", key)
    assert response.status_code == status, response.text
    if status == 403:
        assert "llm_gateway:read" in response.json()["error"]["message"]
        assert response.json()["error"]["code"] == "missing_scope"


@pytest.mark.parametrize("product", ["slack_app", "slack_app_routing", "slack-twig"])
def test_a_personal_key_cannot_reach_a_product_that_requires_a_server_credential(gateway_server, fake_upstream, accounts, product):
    org = accounts.organization()
    accounts.project(org)
    _, key = accounts.key(accounts.user(org), scopes=["*"])
    response = chat(gateway_server, product, key, {"model": "gpt-4o-mini", "messages": []})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "server_credential_required"
    assert fake_upstream.calls == []


def test_a_server_token_reaches_its_product_and_bills_its_project(gateway_server, fake_upstream, accounts):
    project = accounts.project()
    token = mint_server_token(project.pk, "slack_app", run_id=77)
    response = message(gateway_server, "slack_app", token)
    assert response.status_code == 200, response.text
    [event] = recorded(gateway_server)
    assert event.project_id == project.pk and event.product == "slack_app" and event.billable
    assert event.properties["$ai_run_id"] == 77 and event.properties["$ai_credential"] == "server_token"


def test_an_expired_server_token_is_a_401(gateway_server, fake_upstream, accounts, monkeypatch):
    import time

    project = accounts.project()
    token = mint_server_token(project.pk, "slack_app", ttl=timedelta(seconds=30))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 31)
    response = message(gateway_server, "slack_app", token)
    monkeypatch.undo()
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_a_forged_server_token_is_a_401(gateway_server, fake_upstream, accounts):
    project = accounts.project()
    token = mint_server_token(project.pk, "slack_app")
    body, _, signature = token.rpartition(":")
    forged = body + ":" + ("A" if signature[0] != "A" else "B") + signature[1:]
    response = message(gateway_server, "slack_app", forged)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_a_server_token_for_another_product_is_a_401(gateway_server, fake_upstream, accounts):
    project = accounts.project()
    token = mint_server_token(project.pk, "slack_app_routing")
    response = message(gateway_server, "slack_app", token)
    assert response.status_code == 401
    assert "slack_app_routing" in response.json()["error"]["message"]


def test_a_server_token_naming_another_project_in_the_header_is_a_404(gateway_server, fake_upstream, accounts):
    project, other = accounts.project(), accounts.project()
    token = mint_server_token(project.pk, "slack_app")
    assert message(gateway_server, "slack_app", token, x_project_id=str(other.pk)).status_code == 404
    assert message(gateway_server, "slack_app", token, x_project_id=str(project.pk)).status_code == 200


# --- Project attribution -----------------------------------------------------------------------


@pytest.fixture
def two_projects(accounts):
    org = accounts.organization()
    first, second = accounts.project(org), accounts.project(org)
    user = accounts.user(org)
    return first, second, user


def test_a_key_scoped_to_one_project_bills_that_project(gateway_server, fake_upstream, accounts, two_projects):
    first, second, user = two_projects
    _, key = accounts.key(user, scopes=["llm_gateway:read"], projects=[second])
    assert chat(gateway_server, "posthog_code", key).status_code == 200
    [event] = recorded(gateway_server)
    assert event.project_id == second.pk
    # and its scoping holds against the header
    assert chat(gateway_server, "posthog_code", key, x_project_id=str(first.pk)).status_code == 404


def test_the_header_picks_one_of_the_callers_projects(gateway_server, fake_upstream, accounts, two_projects):
    first, second, user = two_projects
    _, key = accounts.key(user, scopes=["llm_gateway:read"])
    assert chat(gateway_server, "posthog_code", key, x_project_id=str(first.pk)).status_code == 200
    [event] = recorded(gateway_server)
    assert event.project_id == first.pk


def test_a_caller_with_one_project_may_omit_the_header(gateway_server, fake_upstream, member):
    assert chat(gateway_server, "posthog_code", member.key).status_code == 200
    [event] = recorded(gateway_server)
    assert event.project_id == member.project.pk


@pytest.mark.parametrize("call, shape", [(chat, "openai"), (message, "anthropic")])
def test_an_ambiguous_project_is_a_400_saying_to_send_the_header(gateway_server, fake_upstream, accounts, two_projects, call, shape):
    _, _, user = two_projects
    _, key = accounts.key(user, scopes=["llm_gateway:read"])
    response = call(gateway_server, "posthog_code", key)
    assert response.status_code == 400
    assert "X-Project-Id" in response.json()["error"]["message"]
    assert fake_upstream.calls == []


@pytest.mark.parametrize("project_id", ["foreign", "missing", "not-a-number"])
def test_a_project_that_is_not_the_callers_is_a_404(gateway_server, fake_upstream, accounts, member, project_id):
    foreign = accounts.project()
    header = {"foreign": str(foreign.pk), "missing": "999999999", "not-a-number": "abc"}[project_id]
    response = chat(gateway_server, "posthog_code", member.key, x_project_id=header)
    assert response.status_code == 404
    assert fake_upstream.calls == []
