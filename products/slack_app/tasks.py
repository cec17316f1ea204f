"""Celery tasks of the Slack app (found by `app.autodiscover_tasks()`): housekeeping and the Home tab."""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .errors import SlackRateLimited, SlackRefused, SlackUnavailable
from .models import BotMessage, RepoPicker

logger = logging.getLogger(__name__)

# The "post once" ledger and the recorded pickers only matter while Slack may still
# redeliver an event (minutes) or a workflow may still retry a step or take a click (its
# picker waits 15 minutes). A month is far past both, and bounds the tables.
KEEP_FOR = timedelta(days=30)


@shared_task(name="products.slack_app.tasks.prune_bot_messages", ignore_result=True)
def prune_bot_messages() -> dict[str, int]:
    """Delete ledger rows and pickers older than `KEEP_FOR` (scheduled daily)."""
    cutoff = timezone.now() - KEEP_FOR
    messages, _ = BotMessage.objects.filter(created_at__lt=cutoff).delete()
    pickers, _ = RepoPicker.objects.filter(created_at__lt=cutoff).delete()
    if messages or pickers:
        logger.info("pruned %d bot message ledger rows and %d repository pickers older than %s", messages, pickers, cutoff)
    return {"bot_messages": messages, "repo_pickers": pickers}


@shared_task(
    name="products.slack_app.tasks.publish_home_tab",
    ignore_result=True,
    autoretry_for=(SlackUnavailable, SlackRateLimited),
    retry_backoff=True,
    max_retries=5,
)
def publish_home_tab(integration_id: int, slack_user_id: str) -> bool:
    """Publish one member's Home tab (views.publish); Slack errors that a retry may fix are retried."""
    from .home import publish_home_tab as publish

    try:
        return publish(integration_id, slack_user_id)
    except SlackRefused as error:
        logger.warning("Slack refused the Home tab of %s (integration #%s): %s", slack_user_id, integration_id, error)
        return False


@shared_task(name="products.slack_app.tasks.prune_oauth_states", ignore_result=True)
def prune_oauth_states() -> int:
    """Delete OAuth states that expired more than a day ago (scheduled daily)."""
    from .oauth_state import prune_states

    return prune_states()
