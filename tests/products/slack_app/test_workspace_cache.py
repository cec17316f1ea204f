"""The webhook's cached workspace lookup (products/slack_app/workspaces.py): fast, and never stale after a change.

Invariant: once a workspace's app is uninstalled, its bot token revoked, its integration
deleted or (re)installed, the very next mention from it, in any process, is decided on
the new state, not after a TTL. The cache only saves the lookup query when nothing
changed: a mention of a known workspace costs one SQL statement (the inbox row).
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from products.slack_app import workspaces
from products.slack_app.inbox_models import MentionInbox
from products.slack_app.models import Integration
from products.slack_app.workspaces import (
    WORKSPACES_GENERATION_KEY,
    MentionTarget,
    WorkspaceCache,
    connect_workspace,
    disable_workspace,
)

from .conftest import BOT_TOKEN, TEAM_ID, mention_envelope, post_event

pytestmark = pytest.mark.django_db


def mention(client) -> str:
    response = post_event(client, mention_envelope())
    assert response.status_code == 200
    return response.json()["outcome"]


def lifecycle_event(client, event: dict) -> None:
    envelope = {"type": "event_callback", "team_id": TEAM_ID, "event_id": "EvLIFE", "event_time": 1, "event": event}
    response = post_event(client, envelope)
    assert response.status_code == 200 and response.json()["outcome"] == "handled"


def another_process_changes_the_workspace(redis_db, **fields) -> None:
    """What a change made by another process looks like from here: the row changed and a new generation in
    Redis, while this process's cache was left alone (a queryset update sends no signal)."""
    Integration.objects.filter(integration_id=TEAM_ID).update(**fields)
    redis_db.set(WORKSPACES_GENERATION_KEY, "changed-elsewhere")


def test_a_known_workspace_costs_one_statement_once_cached(client, integration):
    assert mention(client) == "started"
    with CaptureQueriesContext(connection) as queries:
        assert mention(client) == "started"
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]  # the inbox insert, nothing else
    assert MentionInbox.objects.filter(integration=integration).count() == 2


def test_app_uninstalled_takes_effect_at_the_next_mention(client, integration):
    assert mention(client) == "started"  # cached now
    lifecycle_event(client, {"type": "app_uninstalled"})
    assert mention(client) == "unknown_workspace"
    assert MentionInbox.objects.count() == 1


def test_a_revoked_bot_token_takes_effect_at_the_next_mention(client, integration):
    assert mention(client) == "started"
    lifecycle_event(client, {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}})
    assert mention(client) == "unknown_workspace"


def test_an_uninstall_seen_by_another_process_takes_effect_here_at_the_next_mention(client, integration, redis_db):
    assert mention(client) == "started"
    another_process_changes_the_workspace(redis_db, status=Integration.Status.DISABLED)
    assert mention(client) == "unknown_workspace"


def test_a_reinstall_takes_effect_at_the_next_mention(client, integration):
    disable_workspace(TEAM_ID, "app_uninstalled")
    assert mention(client) == "unknown_workspace"  # the refusal is cached too...
    connect_workspace(integration.project, team_id=TEAM_ID, bot_token=BOT_TOKEN)  # ...until the workspace changes
    assert mention(client) == "started"


def test_a_deleted_integration_or_project_takes_effect_at_the_next_mention(client, integration):
    assert mention(client) == "started"
    integration.project.delete()  # the integration goes with it (a cascade: its post_delete is sent)
    assert mention(client) == "unknown_workspace"


def test_a_workspace_moved_to_another_project_is_metered_on_the_new_project_at_once(client, integration, accounts):
    assert mention(client) == "started"
    integration.delete()
    other = accounts.project()
    connect_workspace(other, team_id=TEAM_ID, bot_token=BOT_TOKEN)
    assert mention(client) == "started"
    latest = MentionInbox.objects.order_by("-id").first()
    assert latest.integration.project == other


def test_with_redis_unreachable_the_lookup_comes_from_the_database(client, integration, redis_db, settings):
    assert mention(client) == "started"  # cached
    # Redis goes away, and the workspace is uninstalled meanwhile (the change cannot be announced).
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    Integration.objects.filter(pk=integration.pk).update(status=Integration.Status.DISABLED)
    assert mention(client) == "unknown_workspace"


def test_a_flushed_generation_key_never_matches_an_old_one(client, integration, redis_db):
    assert mention(client) == "started"
    redis_db.flushdb()  # e.g. Redis restarted without persistence
    Integration.objects.filter(pk=integration.pk).update(status=Integration.Status.DISABLED)
    assert mention(client) == "unknown_workspace"


def test_an_announcement_that_cannot_reach_redis_does_not_fail_the_change(integration, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert disable_workspace(TEAM_ID, "app_uninstalled") == 1
    assert "could not announce a Slack workspace change" in caplog.text


def test_entries_expire_after_the_ttl_even_if_the_generation_never_moves():
    now = [100.0]
    cache = WorkspaceCache(ttl=10, clock=lambda: now[0])
    target = MentionTarget(integration_id=1, api_token="phc_x")
    cache.put("T1", target, b"g1")
    assert cache.get("T1").target == target and cache.get("T1").generation == b"g1"
    now[0] = 109.9
    assert cache.get("T1") is not None
    now[0] = 110.0
    assert cache.get("T1") is None


def test_the_generation_changes_on_every_announcement(integration, redis_db):
    before = redis_db.get(WORKSPACES_GENERATION_KEY)
    workspaces.announce_workspace_change()
    assert redis_db.get(WORKSPACES_GENERATION_KEY) not in (None, before)



@pytest.mark.django_db(transaction=True)
def test_postgres_lost_after_the_lookup_was_cached_is_still_a_503(client, integration):
    """The cached path makes one statement, the inbox insert: if it cannot reach PostgreSQL, Slack delivers again."""
    from tests.conftest import free_port

    assert mention(client) == "started"  # cached: the next mention's only statement is the insert
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = free_port()  # nothing listens there
    try:
        response = post_event(client, mention_envelope())
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert MentionInbox.objects.count() == 1


def test_a_quota_limit_set_after_the_lookup_was_cached_refuses_the_next_mention(client, integration):
    import time

    from products.billing.quota_limiting import QuotaResource, add_limited_tokens

    assert mention(client) == "started"  # cached: the quota read is now the inbox batch's (inbox.QuotaCheck)
    add_limited_tokens(QuotaResource.AI_CREDITS, {integration.project.api_token: time.time() + 3600})
    assert mention(client) == "denied_over_quota"
    assert list(MentionInbox.objects.order_by("id").values_list("action", flat=True)) == ["start", "deny_over_quota"]


def test_with_redis_unreachable_a_cached_workspace_is_decided_by_the_failure_mode(client, integration, settings):
    assert mention(client) == "started"  # cached
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.QUOTA_CHECK_FAILURE_MODE = "closed"
    assert mention(client) == "refused_quota_unknown"
    settings.QUOTA_CHECK_FAILURE_MODE = "open"
    assert mention(client) == "started"
