""""Sign in with Slack" (OpenID Connect) next to the password login.

Invariants: a member of a connected (enabled) workspace signs in with their Slack
identity and reaches the task pages and the billing page of that workspace's
organization only; the same Slack identity is the same user next time; a workspace
that is not connected (or was uninstalled) gets a clear page and no account; the
state is single-use and bound to the browser that started the sign-in.
"""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from products.accounts.models import OrganizationMembership
from products.slack_app.models import Integration, SlackIdentity
from products.tasks.facade import Task
from tests.products.slack_app.oauth_support import (
    CLIENT_ID,
    query,
    slack_app_settings,  # noqa: F401 (fixture)
    through_slack,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("slack_app_settings")]


@pytest.fixture
def two_orgs(accounts):
    acme = accounts.organization(name="Acme")
    web = accounts.project(acme, name="Web")
    Integration.objects.create(project=web, integration_id="T0STUB", team_name="Stub Workspace")
    globex = accounts.organization(name="Globex")
    theirs = accounts.project(globex, name="Theirs")
    return acme, web, globex, theirs


def signin_start(client: Client, next_url: str | None = None) -> str:
    response = client.get("/slack/signin" + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302, response.content
    return response["Location"]


def test_the_login_page_offers_sign_in_with_slack():
    html = Client().get("/login/?next=/billing/").content.decode()
    assert 'href="/slack/signin?next=/billing/"' in html and ">Sign in with Slack<" in html


def test_the_browser_is_sent_to_slacks_openid_page_with_our_client_id_scopes_and_callback(slack_api):
    location = signin_start(Client())
    assert location.startswith(slack_api.openid_authorize_url + "?")
    params = query(location)
    assert params["client_id"] == CLIENT_ID and params["response_type"] == "code"
    assert params["scope"] == "openid,profile,email"
    assert params["redirect_uri"] == "http://testserver/slack/signin/callback"
    assert params["state"]


def test_a_member_of_a_connected_workspace_signs_in_and_sees_only_that_organization(two_orgs, slack_api):
    acme, web, globex, theirs = two_orgs
    ours_task = Task.objects.create(project=web, title="Fix the login test", origin_product="slack")
    their_task = Task.objects.create(project=theirs, title="Secret", origin_product="slack")

    browser = Client()
    back = through_slack(signin_start(browser))
    response = browser.get(back)
    assert response.status_code == 302 and response["Location"] == f"/billing/?organization={acme.pk}"

    billing = browser.get(response["Location"]).content.decode()
    assert "Acme" in billing and "Globex" not in billing
    assert browser.get(f"/billing/?organization={globex.pk}").status_code == 404
    assert browser.get(f"/tasks/{ours_task.pk}/").status_code == 200
    assert browser.get(f"/tasks/{their_task.pk}/").status_code == 404

    user = get_user_model().objects.get(slack_identities__slack_user_id="UMEMBER1")
    assert not user.has_usable_password() and user.email == "member@stub.example"
    assert list(OrganizationMembership.objects.filter(user=user).values_list("organization__name", "level")) == [
        ("Acme", OrganizationMembership.Level.MEMBER)
    ]
    (exchange,) = slack_api.calls_to("openid.connect.token")
    assert exchange.args["code"] == query(back)["code"]
    assert slack_api.calls_to("openid.connect.userInfo")[0].token.startswith("xoxp-oidc-")


def test_signing_in_again_is_the_same_user_and_next_is_honoured(two_orgs, slack_api):
    browser = Client()
    browser.get(through_slack(signin_start(browser)))
    first = SlackIdentity.objects.get().user_id
    again = Client()
    response = again.get(through_slack(signin_start(again, next_url="/tasks/")))
    assert response["Location"] == "/tasks/"
    assert SlackIdentity.objects.get().user_id == first
    assert get_user_model().objects.filter(slack_identities__isnull=False).count() == 1


def test_a_workspace_that_is_not_connected_gets_a_clear_page_and_no_account(two_orgs, slack_api):
    slack_api.workspace.update(team_id="T0NOPE", team_name="Unknown Co")
    browser = Client()
    response = browser.get(through_slack(signin_start(browser)))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your Slack workspace is not connected" in html and "Unknown Co" in html
    assert not SlackIdentity.objects.exists() and "_auth_user_id" not in browser.session


def test_an_uninstalled_workspace_cannot_sign_in(two_orgs, slack_api):
    Integration.objects.update(status=Integration.Status.DISABLED)
    browser = Client()
    assert browser.get(through_slack(signin_start(browser))).status_code == 403
    assert not SlackIdentity.objects.exists()


def test_a_state_from_another_browser_or_used_twice_or_missing_is_refused(two_orgs, slack_api):
    started = Client()
    back = through_slack(signin_start(started))
    other = Client()
    other.get("/login/")
    refused = other.get(back)
    assert refused.status_code == 400 and "started by someone else" in refused.content.decode()
    assert started.get(back).status_code == 302  # the browser that started it finishes
    replay = started.get(back)
    assert replay.status_code == 400 and "already been used" in replay.content.decode()
    missing = Client().get("/slack/signin/callback?code=x")
    assert missing.status_code == 400 and "has no state" in missing.content.decode()
    assert len(slack_api.calls_to("openid.connect.token")) == 1


def test_a_member_signed_in_with_a_password_links_their_slack_identity(two_orgs, accounts, slack_api):
    from tests.products.slack_app.oauth_support import logged_in

    acme, *_ = two_orgs
    member = accounts.user(acme)
    browser = logged_in(member)
    response = browser.get(through_slack(signin_start(browser)))
    assert response.status_code == 302
    assert SlackIdentity.objects.get(slack_user_id="UMEMBER1").user == member
    assert get_user_model().objects.count() == 1  # no new account
    # Next time, from a fresh browser, Slack alone signs them in as themselves.
    fresh = Client()
    fresh.get(through_slack(signin_start(fresh)))
    assert int(fresh.session["_auth_user_id"]) == member.pk
