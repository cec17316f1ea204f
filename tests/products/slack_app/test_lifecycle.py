"""Workspace lifecycle: uninstall and revocation disable an integration; a token Slack refuses marks it broken.

Invariants: after `app_uninstalled` or a bot `tokens_revoked`, mentions from the
workspace are ignored (logged, nothing started, nothing posted); user-token revocations
change nothing; a Slack call answered `invalid_auth` / `token_revoked` /
`account_inactive` marks the integration broken, which operators see in the admin and
the organization's admins (not its members) see on the billing page with the link that
mends it.
"""
from __future__ import annotations

import logging

import pytest

from products.accounts.models import OrganizationMembership
from products.slack_app.errors import SlackRefused
from products.slack_app.models import Integration
from products.slack_app.posting import post_message
from tests.posthog_app.signin import sign_in
from tests.products.slack_app.conftest import mention_envelope, post_event
from tests.products.slack_app.oauth_support import logged_in

pytestmark = pytest.mark.django_db

TEAM = "T0LIFE"


@pytest.fixture
def connected(accounts, slack_api):
    org = accounts.organization(name="Acme")
    project = accounts.project(org, name="Web")
    integration = Integration(project=project, integration_id=TEAM, team_name="Acme Slack", bot_user_id="UBOT1")
    integration.set_bot_token("xoxb-life")
    integration.save()
    return org, integration


def envelope(event: dict, team_id: str = TEAM) -> dict:
    return {"type": "event_callback", "team_id": team_id, "event_id": "EvLIFE1", "event_time": 1, "event": event}


def test_app_uninstalled_disables_the_integration_and_its_mentions_are_ignored_with_a_log_line(client, connected, slack_api, caplog):
    _, integration = connected
    response = post_event(client, envelope({"type": "app_uninstalled"}))
    assert response.status_code == 200 and response.json()["outcome"] == "handled"
    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISABLED and "app_uninstalled" in integration.status_reason

    with caplog.at_level(logging.WARNING):
        mention = post_event(client, mention_envelope(team_id=TEAM))
    assert mention.status_code == 200 and mention.json()["outcome"] == "unknown_workspace"
    assert f"ignoring Slack workspace {TEAM}: its integration is disabled" in caplog.text
    assert slack_api.calls == []  # nothing posted, nothing looked up


def test_a_revoked_bot_token_disables_the_integration(client, connected):
    _, integration = connected
    event = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT1"]}}
    assert post_event(client, envelope(event)).json()["outcome"] == "handled"
    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISABLED and "tokens_revoked" in integration.status_reason


def test_revoked_user_tokens_alone_leave_the_integration_active(client, connected):
    _, integration = connected
    post_event(client, envelope({"type": "tokens_revoked", "tokens": {"oauth": ["U123"], "bot": []}}))
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ACTIVE


def test_an_uninstall_of_another_workspace_changes_nothing_here(client, connected):
    _, integration = connected
    post_event(client, envelope({"type": "app_uninstalled"}, team_id="T0OTHER"))
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ACTIVE


@pytest.mark.parametrize("code", ["invalid_auth", "token_revoked", "account_inactive"])
def test_a_call_refused_for_a_dead_token_marks_the_integration_broken(connected, slack_api, code):
    _, integration = connected
    slack_api.respond("chat.postMessage", body={"ok": False, "error": code})
    with pytest.raises(SlackRefused):
        post_message(integration, channel="C1", text="hi")
    integration.refresh_from_db()
    assert integration.status == Integration.Status.BROKEN and code in integration.status_reason


def test_other_refusals_do_not_mark_it_broken(connected, slack_api):
    _, integration = connected
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "channel_not_found"})
    with pytest.raises(SlackRefused):
        post_message(integration, channel="C1", text="hi")
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ACTIVE


def test_a_broken_integration_shows_in_the_admin(connected, django_user_model, slack_api):
    _, integration = connected
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "invalid_auth"})
    with pytest.raises(SlackRefused):
        post_message(integration, channel="C1", text="hi")
    django_user_model.objects.create_superuser("operator", "op@example.com", "pw")
    from django.test import Client

    admin = Client()
    assert sign_in(admin, "operator", "pw", next_url="/admin/")["Location"] == "/admin/"
    html = admin.get("/admin/slack_app/integration/").content.decode()
    assert "broken (Slack refuses the token)" in html
    assert admin.get("/admin/slack_app/integration/?status__exact=broken").content.decode().count(TEAM) >= 1
    detail = admin.get(f"/admin/slack_app/integration/{integration.pk}/change/").content.decode()
    assert "Slack refused the bot token: invalid_auth" in detail


def test_the_billing_page_tells_the_organizations_admins_and_not_its_members(connected, accounts, slack_api):
    org, integration = connected
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "token_revoked"})
    with pytest.raises(SlackRefused):
        post_message(integration, channel="C1", text="hi")
    admin = accounts.user(org, level=OrganizationMembership.Level.ADMIN)
    member = accounts.user(org)
    html = logged_in(admin).get("/billing/").content.decode()
    assert "Slack app broken in workspace “Acme Slack”" in html and "token_revoked" in html
    assert f'href="/slack/install?project={integration.project_id}">Add to Slack again<' in html
    assert "Slack app broken" not in logged_in(member).get("/billing/").content.decode()


def test_an_uninstalled_app_is_shown_to_admins_too(client, connected, accounts):
    org, _ = connected
    post_event(client, envelope({"type": "app_uninstalled"}))
    admin = accounts.user(org, level=OrganizationMembership.Level.OWNER)
    html = logged_in(admin).get("/billing/").content.decode()
    assert "Slack app disabled in workspace “Acme Slack”" in html and "Mentions there are ignored" in html


def test_an_operator_pasting_a_new_token_in_the_admin_mends_a_broken_integration(connected, django_user_model):
    from django.test import Client

    _, integration = connected
    Integration.objects.filter(pk=integration.pk).update(status=Integration.Status.BROKEN, status_reason="Slack refused the bot token: invalid_auth")
    django_user_model.objects.create_superuser("operator", "op@example.com", "pw")
    admin = Client()
    sign_in(admin, "operator", "pw", next_url="/admin/")
    url = f"/admin/slack_app/integration/{integration.pk}/change/"
    form = {
        "project": integration.project_id, "kind": "slack", "integration_id": TEAM, "config": "{}",
        "status": "broken", "status_reason": "Slack refused the bot token: invalid_auth", "bot_token": "xoxb-fresh",
    }
    assert admin.post(url, form).status_code == 302
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ACTIVE and integration.bot_token == "xoxb-fresh"
