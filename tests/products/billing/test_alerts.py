"""Usage alerts: each of 80 % and 100 % of the AI-credit allowance is announced once per period.

Messages go to the alerts channel of the organization's Slack integration (the Slack
Web API stand-in records them); without one they are logged.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from products.billing.alerts import crossed_thresholds
from products.billing.models import UsageAlert
from products.billing.recompute import update_all_orgs_billing_quotas
from products.slack_app.models import Integration

from .usage_helpers import make_plan, use

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database
BOT_TOKEN = "xoxb-alerts-test-token"


@pytest.fixture
def org_with_slack(accounts, slack_api):
    org = accounts.organization("Acme")
    project = accounts.project(org)
    integration = Integration(project=project, integration_id="TALERTS", config={"alerts_channel": "C-ALERTS"})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    return org, project


def posts(slack_api):
    return slack_api.calls_to("chat.postMessage")


def test_thresholds():
    assert crossed_thresholds(79, 100) == []
    assert crossed_thresholds(80, 100) == [80]
    assert crossed_thresholds(100, 100) == [80, 100]
    assert crossed_thresholds(10**9, None) == []
    assert crossed_thresholds(5, 0) == []


def test_80_then_100_percent_each_post_once_to_the_alerts_channel(org_with_slack, slack_api):
    org, project = org_with_slack
    plan = make_plan(org, ai_credits=1000)
    use(project, 700)
    update_all_orgs_billing_quotas()
    assert posts(slack_api) == []

    use(project, 150)  # 85 %
    update_all_orgs_billing_quotas()
    [warning] = posts(slack_api)
    assert warning.args["channel"] == "C-ALERTS"
    assert warning.token == BOT_TOKEN
    assert "*Acme* has used 85% of its AI credits" in warning.args["text"]
    assert "850 of 1,000 credits" in warning.args["text"]

    update_all_orgs_billing_quotas()  # still 85 %: nothing new
    use(project, 100)  # 95 %
    update_all_orgs_billing_quotas()
    assert len(posts(slack_api)) == 1

    use(project, 60)  # 101 %
    update_all_orgs_billing_quotas()
    update_all_orgs_billing_quotas()
    assert len(posts(slack_api)) == 2
    full = posts(slack_api)[1]
    assert "has used all of its AI credits" in full.args["text"] and "http://testserver/billing" in full.args["text"]
    alerts = UsageAlert.objects.filter(organization=org).order_by("threshold")
    assert [(a.threshold, a.period_start, a.delivered_to) for a in alerts] == [
        (80, plan.period_start, "C-ALERTS"),
        (100, plan.period_start, "C-ALERTS"),
    ]


def test_jumping_past_both_thresholds_posts_one_message_and_records_both(org_with_slack, slack_api):
    org, project = org_with_slack
    make_plan(org, ai_credits=100)
    use(project, 250)
    summary = update_all_orgs_billing_quotas()
    [post] = posts(slack_api)
    assert "has used all of its AI credits" in post.args["text"]
    assert sorted(a.threshold for a in summary.alerts) == [80, 100]
    assert UsageAlert.objects.filter(organization=org).count() == 2


def test_a_new_period_arms_the_alerts_again(org_with_slack, slack_api):
    org, project = org_with_slack
    plan = make_plan(org, anchor=timezone.now() - timedelta(days=25), ai_credits=100)
    use(project, 90)
    update_all_orgs_billing_quotas()
    assert len(posts(slack_api)) == 1

    first_start = plan.period_start
    next_period = plan.period_end + timedelta(hours=2)
    use(project, 85, ts=plan.period_end + timedelta(hours=1))
    update_all_orgs_billing_quotas(now=next_period)
    assert len(posts(slack_api)) == 2
    plan.refresh_from_db()
    assert plan.period_start > first_start
    assert sorted(UsageAlert.objects.values_list("period_start", "threshold")) == [
        (first_start, 80),
        (plan.period_start, 80),
    ]


def test_without_an_alerts_channel_the_alert_is_logged(accounts, slack_api, caplog):
    org = accounts.organization("Quiet")
    project = accounts.project(org)
    make_plan(org, ai_credits=10)
    use(project, 9)
    update_all_orgs_billing_quotas()
    assert posts(slack_api) == []
    assert "Quiet* has used 90% of its AI credits" in caplog.text
    assert UsageAlert.objects.get(organization=org).delivered_to == "log"


def test_a_slack_failure_is_logged_and_not_retried_forever(org_with_slack, slack_api, caplog):
    org, project = org_with_slack
    make_plan(org, ai_credits=10)
    use(project, 9)
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "channel_not_found"})
    update_all_orgs_billing_quotas()
    assert "could not post the usage alert" in caplog.text
    assert UsageAlert.objects.get(organization=org).delivered_to == "failed: C-ALERTS"


def test_dry_run_reports_alerts_without_sending_or_recording(org_with_slack, slack_api):
    org, project = org_with_slack
    make_plan(org, ai_credits=10)
    use(project, 9)
    summary = update_all_orgs_billing_quotas(dry_run=True)
    assert [a.threshold for a in summary.alerts] == [80]
    assert posts(slack_api) == [] and not UsageAlert.objects.exists()


def test_unlimited_organizations_get_no_alerts(org_with_slack, slack_api):
    org, project = org_with_slack
    make_plan(org, ai_credits=None)
    use(project, 10**6)
    update_all_orgs_billing_quotas()
    assert posts(slack_api) == [] and not UsageAlert.objects.exists()


# --- The contract with whoever delivers alerts: the `usage_alert_due` signal ----------------------
# Billing never imports the Slack app; these tests connect receivers of their own, as the
# Slack app does, and check what billing sends and records.


@pytest.fixture
def receiver():
    from products.billing.facade import usage_alert_due

    calls: list[dict] = []
    answers: list = []

    def deliver(sender, **kwargs):
        calls.append({"sender": sender, **kwargs})
        if answers and isinstance(answers[0], Exception):
            raise answers[0]
        return answers[0] if answers else []

    usage_alert_due.connect(deliver, weak=False, dispatch_uid="test-usage-alert-receiver")
    yield calls, answers
    usage_alert_due.disconnect(dispatch_uid="test-usage-alert-receiver")


def test_billing_announces_an_alert_once_and_records_where_receivers_delivered_it(accounts, receiver):
    calls, answers = receiver
    answers.append(["C-ONE", "failed: C-TWO"])
    org = accounts.organization("Globex")
    make_plan(org, ai_credits=100)
    use(accounts.project(org), 85)
    update_all_orgs_billing_quotas()
    update_all_orgs_billing_quotas()
    [call] = [c for c in calls if c["organization_id"] == org.id]
    assert call["sender"] == "billing" and "signal" in call
    assert "*Globex* has used 85% of its AI credits" in call["text"]
    assert UsageAlert.objects.get(organization=org).delivered_to == "C-ONE, failed: C-TWO"


def test_a_receiver_that_raises_is_logged_and_the_run_goes_on(accounts, receiver, caplog):
    calls, answers = receiver
    answers.append(RuntimeError("slack exploded"))
    org = accounts.organization("Initech")
    project = accounts.project(org)
    make_plan(org, ai_credits=10)
    use(project, 20)
    summary = update_all_orgs_billing_quotas()
    assert summary.newly_limited == 1 and len(summary.alerts) == 2
    assert "could not post the usage alert" in caplog.text and "slack exploded" in caplog.text
    assert "Initech* has used all of its AI credits" in caplog.text  # the text itself is not lost
    assert set(UsageAlert.objects.values_list("delivered_to", flat=True)) == {"failed: deliver"}

