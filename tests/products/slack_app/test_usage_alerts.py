"""Usage alerts reach Slack through billing's `usage_alert_due` signal and the Slack app's receiver.

Invariant: an alert is posted once to each alerts channel of the organization's Slack
integrations (one post per workspace and channel), through the bot of that workspace,
and billing is told where it went, including where it failed.
"""
from __future__ import annotations

import pytest

from products.billing.facade import usage_alert_due
from products.slack_app.alerts import deliver_usage_alert
from products.slack_app.models import Integration

pytestmark = pytest.mark.django_db


def integration(project, team_id: str, alerts_channel: str | None, token: str = "xoxb-alerts") -> Integration:
    row = Integration(project=project, integration_id=team_id, config={"alerts_channel": alerts_channel})
    row.set_bot_token(token)
    row.save()
    return row


def deliveries(organization_id: int, text: str = "Acme has used 85% of its AI credits") -> list[list[str]]:
    return [
        result
        for receiver, result in usage_alert_due.send_robust(sender="billing", organization_id=organization_id, text=text)
        if receiver is deliver_usage_alert
    ]


def test_the_receiver_is_connected_at_startup_and_posts_once_per_workspace_and_channel(accounts, slack_api):
    org = accounts.organization("Acme")
    one, two = accounts.project(org), accounts.project(org)
    integration(one, "TA", "C-ALERTS", token="xoxb-a")
    integration(two, "TA", "C-ALERTS", token="xoxb-a")  # same workspace and channel: one post
    integration(two, "TB", "C-OTHER", token="xoxb-b")
    integration(accounts.project(org), "TC", None)  # no alerts channel: nothing
    integration(accounts.project(accounts.organization("Other org")), "TD", "C-NOT-OURS")

    assert deliveries(org.pk) == [["C-ALERTS", "C-OTHER"]]

    posts = slack_api.calls_to("chat.postMessage")
    assert [(p.args["channel"], p.token, p.args["text"]) for p in posts] == [
        ("C-ALERTS", "xoxb-a", "Acme has used 85% of its AI credits"),
        ("C-OTHER", "xoxb-b", "Acme has used 85% of its AI credits"),
    ]


def test_a_failed_post_is_reported_and_the_other_channels_still_get_theirs(accounts, slack_api, caplog):
    org = accounts.organization("Acme")
    integration(accounts.project(org), "TA", "C-GONE")
    integration(accounts.project(org), "TB", "C-ALERTS")
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "channel_not_found"})

    assert deliveries(org.pk) == [["failed: C-GONE", "C-ALERTS"]]
    assert "could not post the usage alert" in caplog.text


def test_an_organization_without_alerts_channels_gets_an_empty_list(accounts, slack_api):
    org = accounts.organization("Quiet")
    integration(accounts.project(org), "TQ", None)
    assert deliveries(org.pk) == [[]]
    assert slack_api.calls == []
