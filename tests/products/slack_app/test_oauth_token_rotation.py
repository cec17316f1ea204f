"""Token rotation: a bot token close to expiry is refreshed (slack_sdk's TokenRotator) before the call that needs it.

Invariants: the refresh and the new access token are stored encrypted; a token that is
not close to expiry is used as is (no refresh); concurrent callers refresh once (the
row lock), because Slack accepts each refresh token only once; a refresh Slack refuses
marks the integration broken.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from products.slack_app.models import Integration
from products.slack_app.posting import post_message
from products.slack_app.slack_client import get_slack_client
from tests.products.slack_app.oauth_support import (
    admin_of,
    logged_in,
    slack_app_settings,  # noqa: F401 (fixture)
    through_slack,
)

pytestmark = pytest.mark.usefixtures("slack_app_settings")


def rotating_integration(accounts, *, expires_in: timedelta) -> Integration:
    project = accounts.project()
    integration = Integration(project=project, integration_id="T0STUB", bot_user_id="UBOTSTUB")
    integration.set_tokens("xoxe.xoxb-old", "xoxe-refresh-old", timezone.now() + expires_in)
    integration.save()
    return integration


@pytest.mark.django_db
def test_an_install_with_rotation_on_stores_the_refresh_token_encrypted_and_the_expiry(accounts, slack_api):
    org = accounts.organization()
    project = accounts.project(org)
    admin = admin_of(accounts, org)
    slack_api.token_rotation = True
    client = logged_in(admin)
    back = through_slack(client.get(f"/slack/install?project={project.pk}")["Location"])
    assert client.get(back).status_code == 200
    integration = Integration.objects.get(project=project)
    assert integration.refresh_token.startswith("xoxe-refresh-")
    assert integration.refresh_token not in integration.sensitive_config
    assert timedelta(hours=11, minutes=59) < integration.token_expires_at - timezone.now() <= timedelta(hours=12)


@pytest.mark.django_db
def test_an_expiring_token_is_refreshed_before_the_call_and_the_new_one_is_used_and_stored(accounts, slack_api):
    integration = rotating_integration(accounts, expires_in=timedelta(minutes=2))
    post_message(integration, channel="C1", text="hello")

    (refresh,) = slack_api.calls_to("oauth.v2.access")
    assert refresh.args["grant_type"] == "refresh_token" and refresh.args["refresh_token"] == "xoxe-refresh-old"
    (post,) = slack_api.calls_to("chat.postMessage")
    assert post.token.startswith("xoxe.xoxb-rotated-")
    stored = Integration.objects.get(pk=integration.pk)
    assert stored.bot_token == post.token and stored.refresh_token.startswith("xoxe-refresh-")
    assert stored.token_expires_at - timezone.now() > timedelta(hours=11)
    # The next call uses the fresh token without refreshing again.
    post_message(stored, channel="C1", text="again")
    assert len(slack_api.calls_to("oauth.v2.access")) == 1


@pytest.mark.django_db
def test_a_token_far_from_expiry_is_used_as_is(accounts, slack_api):
    integration = rotating_integration(accounts, expires_in=timedelta(hours=6))
    post_message(integration, channel="C1", text="hello")
    assert slack_api.calls_to("oauth.v2.access") == []
    assert slack_api.calls_to("chat.postMessage")[0].token == "xoxe.xoxb-old"


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_refresh_once(accounts, slack_api):
    integration = rotating_integration(accounts, expires_in=timedelta(minutes=1))
    hold = slack_api.hold("oauth.v2.access", seconds=1.0)  # the first refresh takes a second: the others must wait for it
    tokens: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            mine = Integration.objects.get(pk=integration.pk)
            tokens.append(get_slack_client(mine).token)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    hold.release()
    assert not errors, errors
    assert len(slack_api.calls_to("oauth.v2.access")) == 1
    assert len(set(tokens)) == 1 and tokens[0].startswith("xoxe.xoxb-rotated-")


@pytest.mark.django_db
def test_a_refused_refresh_marks_the_integration_broken(accounts, slack_api):
    integration = rotating_integration(accounts, expires_in=timedelta(minutes=1))
    slack_api.respond("oauth.v2.access", body={"ok": False, "error": "invalid_refresh_token"})
    get_slack_client(integration)
    stored = Integration.objects.get(pk=integration.pk)
    assert stored.status == Integration.Status.BROKEN and "invalid_refresh_token" in stored.status_reason
