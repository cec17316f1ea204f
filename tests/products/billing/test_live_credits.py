"""Live AI-credit counters (`@posthog/ai-credits-live/<organization_id>`).

Invariants: every recorded call moves the counter at once, so an organization is known
to be over its allowance + buffer within one call of crossing it; the recomputation is
the source of truth and resets the counter from the database on every run, without
losing calls counted while it ran, in the same round trips it always made.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from bench.support import RoundTripCounter
from products.billing import facade
from products.billing import live_credits as live
from products.billing.models import QuotaOverride, ResourceAllowance
from products.billing.quota_limiting import QuotaStateUnavailable
from products.billing.recompute import update_all_orgs_billing_quotas

from .usage_helpers import make_plan, use

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def run(**kwargs):
    return update_all_orgs_billing_quotas(send_alerts=False, **kwargs)


def test_the_key_layout_is_a_hash_per_organization(redis_db):
    facade.add_live_credits(42, 7)
    assert redis_db.type("@posthog/ai-credits-live/42") == b"hash"
    assert redis_db.hgetall("@posthog/ai-credits-live/42") == {b"used": b"7"}


def test_an_organization_never_counted_reads_as_empty_and_limits_nothing():
    counter = facade.live_credits(12345)
    assert counter == facade.LiveCredits(used=0, limit=None, period_end=None)
    assert not counter.exceeded()


def test_zero_or_negative_credits_are_not_written(redis_db):
    facade.add_live_credits(1, 0)
    facade.add_live_credits(1, -5)
    assert not redis_db.exists(live.live_key(1))


def test_recomputation_resets_the_counter_from_the_database(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, ai_credits=(1000, 100, 0))
    use(project, 300)
    use(project, 50, billable=False)  # not billable: never counted
    use(project, 999, ts=timezone.now() - timedelta(days=60))  # an earlier period
    facade.add_live_credits(org.id, 5000)  # drift (e.g. calls never stored): the database wins

    summary = run()

    plan.refresh_from_db()
    counter = facade.live_credits(org.id)
    assert counter.used == 300
    assert counter.limit == 1100  # allowance + overage buffer
    assert counter.period_end == int(plan.period_end.timestamp())
    assert summary.live_counters_written == 1


def test_live_counter_denies_within_one_call_of_crossing_the_allowance(accounts):
    """The recomputation ran at 990 of 1000; the gateway's calls then count live."""
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=1000)
    use(project, 990)
    run()
    assert not facade.live_credits(org.id).exceeded(project.id)

    facade.add_live_credits(org.id, 9)  # 999: still under
    assert not facade.live_credits(org.id).exceeded(project.id)
    facade.add_live_credits(org.id, 1)  # 1000: reached the allowance; the very next check refuses
    assert facade.live_credits(org.id).exceeded(project.id)


def test_calls_counted_while_the_recomputation_sums_usage_are_kept(accounts, monkeypatch):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=1000)
    use(project, 100)
    from products.billing import recompute

    original = recompute.billable_usage_by_org

    def summing_while_a_call_lands(periods):
        result = original(periods)
        facade.add_live_credits(org.id, 25)  # a call recorded after the snapshot, not in the database figure
        return result

    monkeypatch.setattr(recompute, "billable_usage_by_org", summing_while_a_call_lands)
    run()
    assert facade.live_credits(org.id).used == 125


def test_a_run_with_nothing_changed_writes_no_counter(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=1000)
    use(project, 10)
    assert run().live_counters_written == 1
    summary = run()
    assert summary.live_counters_written == 0
    facade.add_live_credits(org.id, 3)  # a call the database does not have yet (not stored)
    assert run().live_counters_written == 1
    assert facade.live_credits(org.id).used == 10


def test_no_plan_unlimited_or_never_limit_means_no_live_limit(accounts):
    no_plan = accounts.organization()
    unlimited = accounts.organization()
    never = accounts.organization()
    for org in (no_plan, unlimited, never):
        accounts.project(org)
    make_plan(unlimited, ai_credits=None)
    make_plan(never, ai_credits=10)
    QuotaOverride.objects.create(organization=never, resource="ai_credits", mode=QuotaOverride.Mode.NEVER_LIMIT)
    run()
    for org in (no_plan, unlimited, never):
        counter = facade.live_credits(org.id)
        assert counter.limit is None and counter.period_end is not None
        facade.add_live_credits(org.id, 10_000)
        assert not facade.live_credits(org.id).exceeded()


def test_a_project_with_its_own_never_limit_is_exempt(accounts):
    org = accounts.organization()
    exempt, other = accounts.project(org), accounts.project(org)
    make_plan(org, ai_credits=10)
    QuotaOverride.objects.create(organization=org, project=exempt, resource="ai_credits", mode=QuotaOverride.Mode.NEVER_LIMIT)
    use(other, 20)
    run()
    counter = facade.live_credits(org.id)
    assert counter.exempt_projects == {exempt.id}
    assert counter.exceeded(other.id) and not counter.exceeded(exempt.id)


def test_raising_the_allowance_updates_the_limit(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, ai_credits=10)
    use(project, 20)
    run()
    assert facade.live_credits(org.id).exceeded(project.id)
    ResourceAllowance.objects.filter(plan=plan, resource="ai_credits").update(allowance=100)
    run()
    counter = facade.live_credits(org.id)
    assert counter.limit == 100 and not counter.exceeded(project.id)


def test_a_stale_period_limits_nothing_until_the_recomputation_resets_it(redis_db):
    now = time.time()
    redis_db.hset(live.live_key(9), mapping={"used": 500, "limit": 100, "period_end": int(now) - 1})
    counter = facade.live_credits(9)
    assert counter.used == 500 and not counter.exceeded(now=now)
    assert counter.exceeded(now=now - 10)


def test_dry_run_writes_no_counter(accounts, redis_db):
    org = accounts.organization()
    accounts.project(org)
    make_plan(org, ai_credits=10)
    summary = run(dry_run=True)
    assert summary.live_counters_written == 1  # what a real run would write
    assert not redis_db.exists(live.live_key(org.id))


def test_the_counters_add_no_round_trip_to_the_recomputation(accounts):
    """A read, a MULTI/EXEC write, and the lock's take and release: four round trips however many organizations."""
    for _ in range(5):
        org = accounts.organization()
        project = accounts.project(org)
        make_plan(org, ai_credits=10)
        use(project, 20)
    with RoundTripCounter() as trips:
        summary = run()
    assert summary.live_counters_written == 5 and summary.newly_limited == 5
    assert trips.count == 4
    with RoundTripCounter() as trips:
        assert run().live_counters_written == 0
    assert trips.count == 3  # nothing changed: no write at all


def test_unreachable_redis_raises_quota_state_unavailable(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(QuotaStateUnavailable):
        facade.add_live_credits(1, 5, timeout=0.2)
    with pytest.raises(QuotaStateUnavailable):
        facade.live_credits(1, timeout=0.2)


def test_counters_expire_after_their_period(accounts, redis_db):
    org = accounts.organization()
    accounts.project(org)
    plan = make_plan(org, ai_credits=10)
    run()
    plan.refresh_from_db()
    expires = redis_db.expiretime(live.live_key(org.id))
    assert expires == int(plan.period_end.timestamp()) + live.EXPIRE_AFTER_PERIOD_SECONDS


def test_a_failing_organization_keeps_its_counter_as_it_was(accounts):
    """Lifting on bad data would unlimit it: a plan row the job refuses leaves the counter alone too."""
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, ai_credits=10)
    use(project, 100)
    run()
    before = facade.live_credits(org.id)
    assert before.exceeded(project.id)
    ResourceAllowance.objects.filter(plan=plan).update(allowance=1000, grace_period_days=2)  # invalid for ai_credits
    use(project, 5)
    summary = run()
    assert summary.failed == 1 and summary.live_counters_written == 0
    assert facade.live_credits(org.id) == before
