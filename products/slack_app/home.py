"""The app's Home tab in Slack: credits used against the allowance, the limit, the billing link, recent tasks.

`app_home_opened` (lifecycle.py) records the viewer and enqueues the Celery task
`publish_home_tab` (tasks.py, which calls `publish_home_tab` here) after the webhook's
transaction commits: `views.publish` never runs inside Slack's 3-second window. After
each quota recomputation billing sends `quota_recomputed`; lifecycle's
`refresh_home_tabs_for` enqueues a refresh of every recorded viewer in the recomputed
organizations, so the tab follows the limits.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from products.billing.facade import billing_summary
from products.tasks.facade import Task, TaskRun, task_page_url

from .errors import SlackPostError
from .models import HomeTabViewer, Integration
from .posting import call_slack
from .slack_client import get_slack_client

logger = logging.getLogger(__name__)

RECENT_TASKS = 10
STATUS_EMOJI = {
    "queued": ":hourglass_flowing_sand:",
    "in_progress": ":arrows_counterclockwise:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
    "quota_limited": ":no_entry:",
}


def _fmt(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def billing_link(organization_id: int) -> str:
    base = settings.BILLING_URL
    return f"{base}{'&' if '?' in base else '?'}organization={organization_id}"


def recent_tasks(integration: Integration) -> list[tuple[Task, str]]:
    """The project's newest tasks with the status of their latest run ("no run yet" when none)."""
    latest = TaskRun.objects.filter(task=OuterRef("pk")).order_by("-created_at", "-id").values("status")[:1]
    tasks = Task.objects.filter(project_id=integration.project_id).annotate(latest_status=Subquery(latest)).order_by(
        "-created_at", "-id"
    )[:RECENT_TASKS]
    return [(task, task.latest_status or "no run yet") for task in tasks]


def build_home_view(integration: Integration, now=None) -> dict[str, Any]:
    """The Home tab's view (Block Kit) for a workspace: what its organization's billing page says, in short."""
    now = now or timezone.now()
    organization = integration.project.organization
    summary = billing_summary(organization, now)
    if summary.allowance is None:
        credits = f"*AI credits used this period:* {summary.credits_used} (no allowance: unlimited)"
    else:
        credits = f"*AI credits used this period:* {summary.credits_used} of {summary.allowance} ({summary.percent_used} %)"
    credits += f"\nPeriod: {_fmt(summary.period_start)} to {_fmt(summary.period_end)}"
    if not summary.quota_state_known:
        state = ":grey_question: The limit state could not be read just now."
    elif summary.limited:
        state = f":no_entry: *Limited* until {_fmt(summary.limited_until)}: the bot refuses new AI work until then."
    else:
        state = ":large_green_circle: *Not limited*: mention the bot to start a task."
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"PostHog Code · {organization.name}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": credits}},
        {"type": "section", "text": {"type": "mrkdwn", "text": state}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "open_billing",
                    "text": {"type": "plain_text", "text": "Open the billing page"},
                    "url": billing_link(organization.pk),
                }
            ],
        },
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Recent tasks"}},
    ]
    tasks = recent_tasks(integration)
    if not tasks:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No tasks yet: @mention the bot in a channel to start one."}})
    for task, status in tasks:
        emoji = STATUS_EMOJI.get(status, ":white_circle:")
        title = task.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:200]
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{emoji} <{task_page_url(task.pk)}|#{task.pk} {title}>\n{status.replace('_', ' ')}"},
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Updated {_fmt(now)}"}]})
    return {"type": "home", "blocks": blocks}


def publish_home_tab(integration_id: int, slack_user_id: str) -> bool:
    """Publish the Home tab to one member; True if Slack took it. Raises `SlackPostError` (the Celery task retries)."""
    integration = Integration.objects.select_related("project__organization").filter(pk=integration_id).first()
    if integration is None or not integration.enabled:
        logger.info("not publishing the Home tab of %s: integration #%s gone or disabled", slack_user_id, integration_id)
        return False
    view = build_home_view(integration)
    client = get_slack_client(integration)
    call_slack("views.publish", lambda: client.views_publish(user_id=slack_user_id, view=view))
    HomeTabViewer.objects.filter(integration=integration, slack_user_id=slack_user_id).update(published_at=timezone.now())
    return True


__all__ = ["SlackPostError", "build_home_view", "publish_home_tab"]
