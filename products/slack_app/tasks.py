"""Celery tasks of the Slack app (found by `app.autodiscover_tasks()`): housekeeping."""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

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
