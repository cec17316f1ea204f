""""Add to Slack": an organization admin installs the bot for one of their projects through OAuth v2.

Invariants: the install runs only for an admin of the project's organization; every
callback is checked against a single-use, expiring state bound to the admin and the
project (missing, reused, expired or someone else's: a clear 400, nothing written, no
code exchanged); the bot is connected only when Slack granted every scope it needs;
one workspace talks to one organization. Driven against the Slack stand-in through the
real slack_sdk WebClient, with the admin signed in through /login/.
"""
from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from products.accounts.models import OrganizationMembership
from products.slack_app.models import Integration, OAuthState
from products.slack_app.oauth import REQUIRED_BOT_SCOPES
from tests.products.slack_app.oauth_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    admin_of,
    logged_in,
    query,
    slack_app_settings,  # noqa: F401 (fixture)
    through_slack,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("slack_app_settings")]


@pytest.fixture
def acme(accounts):
    org = accounts.organization(name="Acme")
    project = accounts.project(org, name="Web")
    admin = admin_of(accounts, org)
    return org, project, admin


def start(client: Client, project) -> str:
    response = client.get(f"/slack/install?project={project.pk}")
    assert response.status_code == 302, response.content
    return response["Location"]


def install(client: Client, project) -> tuple[str, object]:
    """Run the whole flow; return the callback path used and the callback's response."""
    back = through_slack(start(client, project))
    return back, client.get(back)


def test_an_admin_is_sent_to_slack_with_our_client_id_scopes_callback_and_a_fresh_state(acme, slack_api):
    _, project, admin = acme
    location = start(logged_in(admin), project)
    assert location.startswith(slack_api.authorize_url + "?")
    params = query(location)
    assert params["client_id"] == CLIENT_ID
    assert params["scope"].split(",") == list(REQUIRED_BOT_SCOPES)
    assert params["redirect_uri"] == "http://testserver/slack/oauth/callback"
    state = OAuthState.objects.get(state=params["state"])
    assert state.binding == f"user:{admin.pk}" and state.project == project and state.consumed_at is None
    assert timedelta(minutes=9) < state.expires_at - timezone.now() <= timedelta(minutes=10)
    # A second start gets a state of its own.
    assert query(start(logged_in(admin), project))["state"] != params["state"]


def test_the_install_page_lists_the_admins_projects_with_an_add_to_slack_button(acme, accounts):
    org, project, admin = acme
    accounts.project(accounts.organization(name="Other"), name="Not mine")
    html = logged_in(admin).get("/slack/install").content.decode()
    assert "Acme / <strong>Web</strong>" in html and f'href="/slack/install?project={project.pk}">Add to Slack<' in html
    assert "Not mine" not in html


def test_the_whole_flow_connects_the_workspace_with_an_encrypted_token(acme, slack_api):
    _, project, admin = acme
    back, response = install(logged_in(admin), project)
    assert back.startswith("/slack/oauth/callback?")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Connected the Slack workspace" in html and "Stub Workspace" in html and "Web" in html

    # The code was exchanged once, with our client credentials and the same redirect URI.
    (exchange,) = slack_api.calls_to("oauth.v2.access")
    assert exchange.args["code"] == query(back)["code"]
    assert exchange.args["redirect_uri"] == "http://testserver/slack/oauth/callback"
    basic = base64.b64decode(exchange.headers["Authorization"].removeprefix("Basic ")).decode()
    assert basic == f"{CLIENT_ID}:{CLIENT_SECRET}"

    integration = Integration.objects.get(project=project)
    assert integration.integration_id == "T0STUB" and integration.team_name == "Stub Workspace"
    assert integration.bot_user_id == "UBOTSTUB" and integration.scopes == sorted(REQUIRED_BOT_SCOPES)
    assert integration.bot_token.startswith("xoxb-installed-")
    assert integration.bot_token not in integration.sensitive_config  # encrypted at rest
    assert integration.status == Integration.Status.ACTIVE and integration.installed_by == admin
    assert integration.token_expires_at is None and integration.refresh_token == ""  # no token rotation asked for


def test_a_callback_without_state_is_refused_and_nothing_is_exchanged(acme, slack_api):
    _, project, admin = acme
    client = logged_in(admin)
    back = through_slack(start(client, project))
    response = client.get("/slack/oauth/callback?code=" + query(back)["code"])
    assert response.status_code == 400
    assert "has no state" in response.content.decode()
    assert slack_api.calls_to("oauth.v2.access") == [] and not Integration.objects.exists()


def test_an_unknown_state_is_refused(acme, slack_api):
    _, _, admin = acme
    response = logged_in(admin).get("/slack/oauth/callback?code=abc&state=made-up")
    assert response.status_code == 400 and "not one we started" in response.content.decode()
    assert slack_api.calls_to("oauth.v2.access") == []


def test_a_state_is_used_once(acme, slack_api):
    _, project, admin = acme
    client = logged_in(admin)
    back, first = install(client, project)
    assert first.status_code == 200
    replay = client.get(back)
    assert replay.status_code == 400 and "already been used" in replay.content.decode()
    assert len(slack_api.calls_to("oauth.v2.access")) == 1


def test_an_expired_state_is_refused(acme, slack_api):
    _, project, admin = acme
    client = logged_in(admin)
    back = through_slack(start(client, project))
    OAuthState.objects.filter(state=query(back)["state"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(back)
    assert response.status_code == 400 and "has expired" in response.content.decode()
    assert slack_api.calls_to("oauth.v2.access") == [] and not Integration.objects.exists()


def test_another_users_state_is_refused_and_left_for_its_owner(acme, accounts, slack_api):
    org, project, admin = acme
    other_admin = admin_of(accounts, org)
    back = through_slack(start(logged_in(admin), project))
    response = logged_in(other_admin).get(back)
    assert response.status_code == 400 and "started by someone else" in response.content.decode()
    assert slack_api.calls_to("oauth.v2.access") == [] and not Integration.objects.exists()
    # The admin who started it can still finish.
    assert logged_in(admin).get(back).status_code == 200
    assert Integration.objects.get(project=project).installed_by == admin


def test_missing_scopes_fail_closed_with_a_page_naming_them(acme, slack_api):
    _, project, admin = acme
    slack_api.grant_scopes = [s for s in REQUIRED_BOT_SCOPES if s not in {"chat:write", "users:read"}]
    _, response = install(logged_in(admin), project)
    assert response.status_code == 400
    html = response.content.decode()
    assert "not given every permission" in html
    assert "<code>chat:write</code>" in html and "<code>users:read</code>" in html and "<code>channels:read</code>" not in html
    assert not Integration.objects.exists()


def test_a_reinstall_updates_the_same_integration_and_mends_a_broken_one(acme, slack_api):
    _, project, admin = acme
    client = logged_in(admin)
    install(client, project)
    first = Integration.objects.get(project=project)
    Integration.objects.filter(pk=first.pk).update(status=Integration.Status.BROKEN, status_reason="Slack refused the bot token: invalid_auth")
    slack_api.workspace["team_name"] = "Stub Workspace (renamed)"
    _, response = install(client, project)
    assert response.status_code == 200 and "Reconnected the Slack workspace" in response.content.decode()
    (integration,) = Integration.objects.filter(project=project)
    assert integration.pk == first.pk
    assert integration.team_name == "Stub Workspace (renamed)"
    assert integration.bot_token != first.bot_token
    assert integration.status == Integration.Status.ACTIVE and integration.status_reason == ""


def test_a_workspace_connected_to_another_organization_is_refused(acme, accounts, slack_api):
    _, project, admin = acme
    theirs = accounts.project(accounts.organization(name="Globex"), name="Theirs")
    Integration.objects.create(project=theirs, integration_id="T0STUB")
    _, response = install(logged_in(admin), project)
    assert response.status_code == 409
    html = response.content.decode()
    assert "already connected to another organization" in html and "Stub Workspace" in html
    assert not Integration.objects.filter(project=project).exists()


def test_a_workspace_uninstalled_from_another_organization_can_be_installed_here(acme, accounts, slack_api):
    _, project, admin = acme
    theirs = accounts.project(accounts.organization(name="Globex"), name="Theirs")
    Integration.objects.create(project=theirs, integration_id="T0STUB", status=Integration.Status.DISABLED)
    _, response = install(logged_in(admin), project)
    assert response.status_code == 200
    assert Integration.objects.get(project=project).status == Integration.Status.ACTIVE


def test_members_and_admins_of_other_organizations_get_a_403(acme, accounts, slack_api):
    org, project, _ = acme
    member = accounts.user(org, level=OrganizationMembership.Level.MEMBER)
    response = logged_in(member).get(f"/slack/install?project={project.pk}")
    assert response.status_code == 403 and "Only an organization admin" in response.content.decode()
    stranger = admin_of(accounts, accounts.organization(name="Globex"))
    assert logged_in(stranger).get(f"/slack/install?project={project.pk}").status_code == 403
    assert not OAuthState.objects.exists()


def test_signed_out_visitors_are_sent_to_sign_in_and_bad_project_ids_are_a_400(acme):
    _, project, admin = acme
    response = Client().get(f"/slack/install?project={project.pk}")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/slack/install")
    bad = logged_in(admin).get("/slack/install?project=abc")
    assert bad.status_code == 400 and "as a number" in bad.content.decode()


def test_cancelling_on_slacks_page_connects_nothing(acme, slack_api):
    _, project, admin = acme
    slack_api.denied = True
    _, response = install(logged_in(admin), project)
    assert response.status_code == 400 and "access_denied" in response.content.decode()
    assert slack_api.calls_to("oauth.v2.access") == [] and not Integration.objects.exists()


def test_a_code_slack_refuses_is_a_clear_page(acme, slack_api):
    _, project, admin = acme
    slack_api.respond("oauth.v2.access", body={"ok": False, "error": "invalid_code"})
    _, response = install(logged_in(admin), project)
    assert response.status_code == 502 and "invalid_code" in response.content.decode()
    assert not Integration.objects.exists()


def test_without_client_credentials_the_install_says_it_is_not_configured(acme, settings):
    _, project, admin = acme
    settings.SLACK_CLIENT_ID = ""
    response = logged_in(admin).get(f"/slack/install?project={project.pk}")
    assert response.status_code == 503 and "SLACK_CLIENT_ID" in response.content.decode()
