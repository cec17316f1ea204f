"""The app's Home tab: what a member sees in Slack about their organization's AI credits and tasks.

Invariants: opening the Home tab records the viewer and publishes the tab from a Celery
task after the webhook's transaction commits (never inside Slack's 3-second window);
the tab shows the credits used this period against the allowance, whether the team is
limited and until when, a link to the billing page and the team's recent tasks with
their status and links; after each quota recomputation the tabs of the members who
opened it are published again, and nobody else's.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from posthog_app.celery import app as celery_app
from products.billing import quota_limiting as ql
from products.billing.recompute import update_all_orgs_billing_quotas
from products.slack_app.models import HomeTabViewer, Integration
from products.tasks.facade import Task, TaskRun
from tests.products.billing.usage_helpers import make_plan, use
from tests.products.slack_app.conftest import post_event

pytestmark = pytest.mark.django_db

TEAM = "T0HOME"


@pytest.fixture
def celery_eager():
    """Run Celery tasks in process when queued (the real task code, without a worker)."""
    kept = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = kept


@pytest.fixture
def team(accounts, slack_api, celery_eager):
    org = accounts.organization(name="Acme")
    project = accounts.project(org, name="Web")
    make_plan(org, anchor=timezone.now() - timedelta(days=3), ai_credits=(1000, 0, 0))
    use(project, 650, ts=timezone.now() - timedelta(hours=2))
    integration = Integration(project=project, integration_id=TEAM, team_name="Acme Slack")
    integration.set_bot_token("xoxb-home")
    integration.save()
    older = Task.objects.create(project=project, title="Fix <the> flaky login test", origin_product="slack",
                                created_at=timezone.now() - timedelta(hours=1))
    TaskRun.objects.create(task=older, status="completed")
    newer = Task.objects.create(project=project, title="Bump Django", origin_product="slack")
    TaskRun.objects.create(task=newer, status="queued", created_at=timezone.now() - timedelta(minutes=5))
    TaskRun.objects.create(task=newer, status="in_progress")
    return org, project, integration, older, newer


def home_opened(user: str = "U111", tab: str = "home", team_id: str = TEAM) -> dict:
    return {
        "type": "event_callback", "team_id": team_id, "event_id": f"EvHOME{user}", "event_time": 1,
        "event": {"type": "app_home_opened", "user": user, "channel": "D1", "tab": tab},
    }


def published_text(call) -> str:
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["type"] == "home"
    parts = []
    for block in view["blocks"]:
        for key in ("text",):
            if isinstance(block.get(key), dict):
                parts.append(block[key]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "button":
                parts.append(f"[{element['text']['text']}]({element['url']})")
            elif "text" in element:
                parts.append(element["text"])
    return "\n".join(parts)


def test_opening_the_home_tab_publishes_credits_limit_billing_link_and_recent_tasks_after_commit(
    client, team, slack_api, django_capture_on_commit_callbacks
):
    org, _, integration, older, newer = team
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_event(client, home_opened())
        assert response.status_code == 200 and response.json()["outcome"] == "handled"
        assert slack_api.calls_to("views.publish") == []  # not inside the webhook's request
    assert HomeTabViewer.objects.filter(integration=integration, slack_user_id="U111").exists()
    for callback in callbacks:
        callback()

    (call,) = slack_api.calls_to("views.publish")
    assert call.args["user_id"] == "U111" and call.token == "xoxb-home"
    text = published_text(call)
    assert "PostHog Code · Acme" in text
    assert "*AI credits used this period:* 650 of 1000 (65 %)" in text
    assert "*Not limited*" in text
    assert f"[Open the billing page](http://testserver/billing?organization={org.pk})" in text
    # Newest first, each with its latest run's status and its page; titles escaped for Slack.
    assert text.index(f"#{newer.pk} Bump Django") < text.index(f"#{older.pk} Fix &lt;the&gt; flaky login test")
    assert f"<http://testserver/tasks/{newer.pk}/|#{newer.pk} Bump Django>\nin progress" in text
    assert f"<http://testserver/tasks/{older.pk}/|#{older.pk} Fix &lt;the&gt; flaky login test>\ncompleted" in text
    assert HomeTabViewer.objects.get(slack_user_id="U111").published_at is not None


def test_a_limited_team_sees_until_when(client, team, slack_api, django_capture_on_commit_callbacks):
    _, project, *_ = team
    until = timezone.now() + timedelta(days=4)
    ql.add_limited_tokens(ql.QuotaResource.AI_CREDITS, {project.api_token: until})
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, home_opened())
    text = published_text(slack_api.calls_to("views.publish")[0])
    assert f"*Limited* until {until:%Y-%m-%d %H:%M} UTC" in text and "Not limited" not in text


def test_after_a_recomputation_the_tabs_of_those_who_opened_it_are_published_again(
    client, team, accounts, slack_api, django_capture_on_commit_callbacks
):
    org, project, integration, *_ = team
    other_org = accounts.organization(name="Globex")
    other = Integration.objects.create(project=accounts.project(other_org), integration_id="T0ELSE")
    HomeTabViewer.objects.create(integration=other, slack_user_id="U999")
    Integration.objects.filter(pk=other.pk).update(status=Integration.Status.DISABLED)  # uninstalled: never published
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, home_opened("U111"))
        post_event(client, home_opened("U222"))
    assert len(slack_api.calls_to("views.publish")) == 2

    use(project, 500)  # now over the allowance of 1000
    with django_capture_on_commit_callbacks(execute=True):
        update_all_orgs_billing_quotas(send_alerts=False)
    calls = slack_api.calls_to("views.publish")[2:]
    assert sorted(c.args["user_id"] for c in calls) == ["U111", "U222"]
    for call in calls:
        text = published_text(call)
        assert "1150 of 1000 (115 %)" in text and "*Limited* until" in text


def test_a_dry_run_recomputation_refreshes_nothing(client, team, slack_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, home_opened())
    with django_capture_on_commit_callbacks(execute=True):
        update_all_orgs_billing_quotas(dry_run=True, send_alerts=False)
    assert len(slack_api.calls_to("views.publish")) == 1


def test_the_messages_tab_and_unknown_workspaces_publish_nothing(client, team, slack_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, home_opened(tab="messages"))
        post_event(client, home_opened(team_id="T0NOWHERE"))
    assert slack_api.calls_to("views.publish") == [] and not HomeTabViewer.objects.exists()


def test_a_team_without_tasks_is_told_how_to_start_one(client, accounts, slack_api, celery_eager, django_capture_on_commit_callbacks):
    project = accounts.project(accounts.organization(name="Empty"))
    integration = Integration(project=project, integration_id=TEAM)
    integration.set_bot_token("xoxb-empty")
    integration.save()
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, home_opened())
    text = published_text(slack_api.calls_to("views.publish")[0])
    assert "(no allowance: unlimited)" in text and "No tasks yet: @mention the bot" in text
