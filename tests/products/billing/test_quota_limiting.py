"""Quota state in Redis: the layout PostHog's readers expect, expiry, and freshness."""
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from products.billing import quota_limiting as ql
from products.billing.quota_limiting import QuotaResource

TOKEN = "phc_test_token"


def test_keys_use_posthogs_layout():
    assert ql.redis_key(QuotaResource.AI_CREDITS) == "@posthog/quota-limits/ai_credits"
    assert ql.redis_key(QuotaResource.EVENTS, ql.SUSPENDED) == "@posthog/quota-limiting-suspended/events"


def test_resource_values_match_the_design():
    assert [r.value for r in QuotaResource] == [
        "events", "exceptions", "recordings", "rows_synced", "feature_flag_requests",
        "api_queries_read_bytes", "survey_responses", "llm_events", "cdp_trigger_events",
        "rows_exported", "ai_credits",
    ]


def test_unknown_resource_error_lists_valid_ones():
    with pytest.raises(ValueError, match="ai_credits"):
        QuotaResource.parse("credits")


@pytest.mark.parametrize("resource", list(QuotaResource))
def test_limit_is_seen_by_the_very_next_check_for_every_resource(resource, redis_db):
    assert not ql.is_team_limited(TOKEN, resource)
    ql.add_limited_tokens(resource, {TOKEN: time.time() + 3600})
    assert ql.is_team_limited(TOKEN, resource)
    # Written where PostHog's readers look for it, as Unix seconds.
    assert redis_db.zscore(f"@posthog/quota-limits/{resource.value}", TOKEN) > time.time()
    ql.remove_limited_tokens(resource, [TOKEN])
    assert not ql.is_team_limited(TOKEN, resource)


def test_a_score_in_the_past_is_not_limited(redis_db):
    redis_db.zadd("@posthog/quota-limits/ai_credits", {TOKEN: int(time.time()) - 1})
    assert not ql.is_team_limited(TOKEN, QuotaResource.AI_CREDITS)
    assert ql.list_limited_tokens(QuotaResource.AI_CREDITS) == {}
    status = ql.get_quota_status(TOKEN)[QuotaResource.AI_CREDITS]
    assert status.limited is False and status.limited_until is None


def test_limit_written_by_another_writer_is_read(redis_db):
    """PostHog's own billing writes the same keys; we must read them as-is."""
    until = int(time.time()) + 600
    redis_db.zadd("@posthog/quota-limits/llm_events", {TOKEN: until})
    assert ql.is_team_limited(TOKEN, QuotaResource.LLM_EVENTS)
    assert ql.get_quota_status(TOKEN)[QuotaResource.LLM_EVENTS].limited_until == datetime.fromtimestamp(until, timezone.utc)


def test_replace_makes_the_set_exactly_the_mapping(redis_db):
    future = time.time() + 3600
    ql.add_limited_tokens(QuotaResource.EVENTS, {"phc_a": future, "phc_b": future})
    ql.replace_limited_tokens(QuotaResource.EVENTS, {"phc_b": future, "phc_c": future})
    assert set(ql.list_limited_tokens(QuotaResource.EVENTS)) == {"phc_b", "phc_c"}
    ql.replace_limited_tokens(QuotaResource.EVENTS, {})
    assert ql.list_limited_tokens(QuotaResource.EVENTS) == {}


def test_suspended_set_is_separate_from_limits():
    until = datetime.now(timezone.utc) + timedelta(days=2)
    ql.add_limited_tokens(QuotaResource.RECORDINGS, {TOKEN: until}, ql.SUSPENDED)
    assert not ql.is_team_limited(TOKEN, QuotaResource.RECORDINGS)
    assert set(ql.list_limited_tokens(QuotaResource.RECORDINGS, ql.SUSPENDED)) == {TOKEN}
    status = ql.get_quota_status(TOKEN)[QuotaResource.RECORDINGS]
    assert status.suspended_until == until.replace(microsecond=0) and not status.limited


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        ql.add_limited_tokens(QuotaResource.EVENTS, {TOKEN: datetime.now()})


def test_is_team_limited_costs_one_command_and_status_one_round_trip(redis_db):
    before = redis_db.info("commandstats")
    ql.is_team_limited(TOKEN, QuotaResource.AI_CREDITS)
    after = redis_db.info("commandstats")
    calls = {k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after}
    # INFO itself is counted once between the two snapshots.
    assert {k: v for k, v in calls.items() if v and k != "cmdstat_info"} == {"cmdstat_zscore": 1}


def test_unreachable_redis_raises_a_typed_error(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/9"
    with pytest.raises(ql.QuotaStateUnavailable):
        ql.is_team_limited(TOKEN, QuotaResource.AI_CREDITS)
    with pytest.raises(ql.QuotaStateUnavailable):
        ql.get_quota_status(TOKEN)


def test_each_state_maps_to_its_sorted_set_and_nothing_else():
    assert ql.cache_for_state("limited") is ql.LIMITS
    assert ql.cache_for_state("suspended") is ql.SUSPENDED
    with pytest.raises(ValueError, match="limited, suspended"):
        ql.cache_for_state("paused")


def test_bulk_changes_are_one_atomic_round_trip_in_posthogs_layout(redis_db):
    future = int(time.time()) + 3600
    redis_db.zadd("@posthog/quota-limits/ai_credits", {"phc_old": future})
    changes = ql.QuotaStateChanges()
    for i in range(ql.WRITE_CHUNK + 2):  # more than one ZADD's worth
        changes.add("ai_credits", "limited", f"phc_{i}", future)
    changes.add("events", "suspended", TOKEN, future)
    changes.remove("ai_credits", "limited", "phc_old")
    before = redis_db.info("commandstats")

    ql.apply_quota_changes(changes)

    after = redis_db.info("commandstats")
    calls = {k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after}
    assert calls.get("cmdstat_multi") == 1 and calls.get("cmdstat_exec") == 1
    assert calls.get("cmdstat_zadd") == 3 and calls.get("cmdstat_zrem") == 1
    assert redis_db.zcard("@posthog/quota-limits/ai_credits") == ql.WRITE_CHUNK + 2
    assert redis_db.zscore("@posthog/quota-limiting-suspended/events", TOKEN) == future
    assert redis_db.zscore("@posthog/quota-limits/ai_credits", "phc_old") is None


def test_whole_sets_are_read_in_one_round_trip_expired_members_included(redis_db):
    past, future = int(time.time()) - 60, int(time.time()) + 60
    redis_db.zadd("@posthog/quota-limits/ai_credits", {"phc_a": past, "phc_b": future})
    redis_db.zadd("@posthog/quota-limiting-suspended/llm_events", {"phc_c": future})
    state = ql.read_quota_sets(["ai_credits", "llm_events"])
    assert state == {
        ("ai_credits", "limited"): {"phc_a": past, "phc_b": future},
        ("ai_credits", "suspended"): {},
        ("llm_events", "limited"): {},
        ("llm_events", "suspended"): {"phc_c": future},
    }


def test_the_exclusive_lock_is_held_by_one_caller_at_a_time():
    with ql.exclusive_lock("test:lock", 60) as first:
        with ql.exclusive_lock("test:lock", 60) as second:
            assert (first, second) == (True, False)
    with ql.exclusive_lock("test:lock", 60) as again:
        assert again is True
