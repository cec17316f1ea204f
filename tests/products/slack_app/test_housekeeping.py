"""The "post once" ledger and recorded pickers are pruned daily once nothing can need them."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings as django_settings
from django.utils import timezone

from products.slack_app.models import BotMessage, RepoPicker


def test_rows_older_than_thirty_days_are_pruned_and_recent_ones_kept(integration):
    from products.slack_app.tasks import prune_bot_messages

    old = timezone.now() - timedelta(days=31)
    BotMessage.objects.create(key="wf-old", step="on_it", channel="C1", created_at=old)
    recent = BotMessage.objects.create(key="wf-new", step="on_it", channel="C1")
    RepoPicker.objects.create(integration=integration, workflow_id="wf-old", channel="C1", thread_ts="1.0", created_at=old)
    kept_picker = RepoPicker.objects.create(integration=integration, workflow_id="wf-new", channel="C1", thread_ts="1.0")

    assert prune_bot_messages.apply().get() == {"bot_messages": 1, "repo_pickers": 1}
    assert list(BotMessage.objects.all()) == [recent]
    assert list(RepoPicker.objects.all()) == [kept_picker]


def test_the_prune_runs_daily_from_celery_beat():
    from posthog_app.celery import app

    app.loader.import_default_modules()
    entry = django_settings.CELERY_BEAT_SCHEDULE["prune-slack-bot-messages"]
    assert entry["task"] in app.tasks
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {35}
