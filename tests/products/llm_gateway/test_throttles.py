"""The gateway's throttles and their runner (products/llm_gateway/throttles.py), on real Redis and PostgreSQL.

Invariants: a billable call is refused while its project is limited, or its organization's
live counter has reached allowance + buffer (within one call of crossing it, before any
recomputation); every product is refused past its cost limits; denials are data, the
first in list order wins while all run at once; counting spend never breaks a call.
"""
from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest

from products.billing import facade as billing
from products.billing import quota_limiting as ql
from products.billing.quota_limiting import QuotaResource
from products.billing.recompute import update_all_orgs_billing_quotas
from products.llm_gateway import throttles as th
from products.llm_gateway.cost_limits import BUCKETS, limits_for
from products.llm_gateway.throttles import (
    AICreditsThrottle,
    Denial,
    LiveCreditsThrottle,
    ProductCostThrottle,
    Spend,
    UserCostThrottle,
    check_throttles,
    record_spend,
    record_spends,
)
from tests.products.billing.usage_helpers import make_plan, use

from .quota_support import Clock, context

pytestmark = pytest.mark.django_db
AI = QuotaResource.AI_CREDITS
DAY = 86400


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def project(accounts):
    return accounts.project(accounts.organization())


def limit(project, seconds=3600):
    ql.add_limited_tokens(AI, {project.api_token: int(time.time() + seconds)})


def spend(ctx, usd, credits=0, now=None):
    run(record_spend(ctx, Spend(cost_usd=Decimal(str(usd)), credits=credits), now=now))


# --- ai_credits ----------------------------------------------------------------------------


def test_ai_credits_refuses_a_billable_product_of_a_limited_project(project):
    limit(project, 3600)
    denial = run(AICreditsThrottle().check(context(project, "phx_k")))
    assert denial.scope == "ai_credits" and 3590 <= denial.retry_after <= 3601 and "AI credits" in denial.message


def test_ai_credits_lets_a_non_billable_product_through_even_when_limited(project):
    limit(project)
    assert run(AICreditsThrottle().check(context(project, "phx_k", billable=False, product="posthog_code"))) is None


def test_ai_credits_allows_a_project_that_is_not_limited(project):
    assert run(AICreditsThrottle().check(context(project, "phx_k"))) is None


def test_ai_credits_refuses_when_redis_is_unreachable(project, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = 0.3
    denial = run(AICreditsThrottle().check(context(project, "phx_k")))
    assert denial.scope == "ai_credits" and "temporarily unavailable" in denial.message


def test_ai_credits_uses_the_configured_source(project, settings):
    """With LLM_GATEWAY_QUOTA_SOURCE=http nothing is read from the local Redis: an unreachable endpoint fails open first."""
    settings.LLM_GATEWAY_QUOTA_SOURCE = "http"
    settings.LLM_GATEWAY_QUOTA_URL = "http://127.0.0.1:1"
    settings.LLM_GATEWAY_QUOTA_RETRIES = 0
    limit(project)  # in the local Redis, which this source does not read
    assert run(AICreditsThrottle().check(context(project, "phx_k"))) is None


# --- live_credits --------------------------------------------------------------------------


def test_live_credits_denies_within_one_call_of_crossing_the_allowance(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=(1000, 50, 0))
    use(project, 1000)
    update_all_orgs_billing_quotas(send_alerts=False)  # 1000 of 1050: not limited yet
    assert not ql.list_limited_tokens(AI)
    ctx = context(project, "phx_k")
    throttle = LiveCreditsThrottle()

    spend(ctx, "0.49", credits=49)  # 1049
    assert run(throttle.check(ctx)) is None
    spend(ctx, "0.01", credits=1)  # 1050: reached allowance + buffer
    denial = run(throttle.check(ctx))
    assert denial.scope == "live_credits" and "1,050 of its 1,050" in denial.message
    assert denial.retry_after > 0
    # The quota sets still say nothing (no recomputation ran): only the live counter knows.
    assert run(AICreditsThrottle().check(ctx)) is None
    assert run(check_throttles(ctx)).scope == "live_credits"


def test_live_credits_is_reset_by_the_recomputation(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, ai_credits=100)
    use(project, 90)
    update_all_orgs_billing_quotas(send_alerts=False)
    plan.refresh_from_db()
    ctx = context(project, "phx_k")
    spend(ctx, "0.2", credits=20)  # counted live, but never stored (e.g. an event lost): 110
    assert run(LiveCreditsThrottle().check(ctx)).scope == "live_credits"
    update_all_orgs_billing_quotas(send_alerts=False)  # the database says 90
    assert billing.live_credits(org.id).used == 90
    assert billing.live_credits(org.id).period_end == int(plan.period_end.timestamp())
    assert run(LiveCreditsThrottle().check(ctx)) is None


def test_live_credits_ignores_non_billable_products_and_exempt_projects(accounts, redis_db):
    org = accounts.organization()
    project = accounts.project(org)
    redis_db.hset(f"@posthog/ai-credits-live/{org.id}",
                  mapping={"used": 500, "limit": 100, "period_end": int(time.time()) + DAY})
    assert run(LiveCreditsThrottle().check(context(project, "k"))).scope == "live_credits"
    assert run(LiveCreditsThrottle().check(context(project, "k", billable=False, product="posthog_code"))) is None
    redis_db.hset(f"@posthog/ai-credits-live/{org.id}", "exempt", str(project.id))
    assert run(LiveCreditsThrottle().check(context(project, "k"))) is None


def test_live_credits_does_not_count_non_billable_spend(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    spend(context(project, "k", billable=False, product="posthog_code"), "1", credits=100)
    assert billing.live_credits(org.id).used == 0
    spend(context(project, "k"), "1", credits=100)
    assert billing.live_credits(org.id).used == 100


def test_live_credits_with_no_limit_or_a_stale_period_allows(accounts, redis_db):
    org = accounts.organization()
    project = accounts.project(org)
    key = f"@posthog/ai-credits-live/{org.id}"
    redis_db.hset(key, mapping={"used": 10**9, "period_end": int(time.time()) + DAY})
    assert run(LiveCreditsThrottle().check(context(project, "k"))) is None  # no limit
    redis_db.hset(key, mapping={"limit": 1, "period_end": int(time.time()) - 1})
    assert run(LiveCreditsThrottle().check(context(project, "k"))) is None  # the period ended


def test_live_credits_allows_when_its_redis_is_unreachable(project, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = 0.3
    with caplog.at_level(logging.ERROR, logger="products.llm_gateway.throttles"):
        assert run(LiveCreditsThrottle().check(context(project, "k"))) is None
    assert "live credit counter unreadable" in caplog.text


# --- product_cost --------------------------------------------------------------------------


def test_product_cost_is_shared_by_every_caller_of_the_product(accounts):
    clock = Clock(1_800_000_000)
    a, b = accounts.project(accounts.organization()), accounts.project(accounts.organization())
    throttle = ProductCostThrottle(clock=clock)
    spend(context(a, "k", user_id=1), "600", now=clock())
    assert run(throttle.check(context(b, "k", user_id=2))) is None
    spend(context(b, "k", user_id=2), "400", now=clock())  # $1000: the default limit per 24 h
    denial = run(throttle.check(context(a, "k", user_id=3)))
    assert denial.scope == "product_cost" and "$1,000.00 per 24 hours" in denial.message
    assert 0 < denial.retry_after <= DAY
    # Another product has its own window.
    assert run(throttle.check(context(a, "k", product="slack_app_routing"))) is None


def test_product_cost_window_slides(project):
    clock = Clock(1_800_000_000)
    window = limits_for("slack_app").product
    throttle = ProductCostThrottle(clock=clock)
    spend(context(project, "k"), "300", now=clock())
    clock.advance(window.bucket_seconds * 5)
    spend(context(project, "k"), "700", now=clock())
    denial = run(throttle.check(context(project, "k")))
    assert denial is not None
    # Spend is back under the limit once the first bucket has slid out of the window.
    first_bucket = int((clock() - window.bucket_seconds * 5) // window.bucket_seconds)
    assert denial.retry_after == pytest.approx((first_bucket + BUCKETS) * window.bucket_seconds - clock(), abs=1)
    clock.advance(denial.retry_after)
    assert run(throttle.check(context(project, "k"))) is None
    clock.advance(window.seconds)
    assert run(throttle.check(context(project, "k"))) is None


def test_product_cost_limits_are_configured_per_product(project, settings):
    settings.LLM_GATEWAY_PRODUCT_COST_LIMITS = {"slack_app_routing": {"product_usd": 5, "product_window_seconds": 3600}}
    assert limits_for("slack_app_routing").product.usd == Decimal("5")
    assert limits_for("slack_app").product.usd == Decimal("1000")
    clock = Clock(1_800_000_000)
    spend(context(project, "k", product="slack_app_routing"), "5", now=clock())
    denial = run(ProductCostThrottle(clock=clock).check(context(project, "k", product="slack_app_routing")))
    assert denial.scope == "product_cost" and "$5.00 per 1 hours" in denial.message and denial.retry_after <= 3600


def test_product_cost_defaults_come_from_settings(settings):
    settings.LLM_GATEWAY_PRODUCT_COST_USD = 10
    settings.LLM_GATEWAY_USER_BURST_USD = 2
    settings.LLM_GATEWAY_USER_SUSTAINED_WINDOW_SECONDS = 7 * DAY
    limits = limits_for("posthog_code")
    assert (limits.product.usd, limits.user_burst.usd, limits.user_sustained.seconds) == (Decimal(10), Decimal(2), 7 * DAY)


def test_cost_throttles_apply_to_non_billable_products_too(project):
    clock = Clock(1_800_000_000)
    ctx = context(project, "k", billable=False, product="posthog_code", user_id=7)
    spend(ctx, "1000", now=clock())
    assert run(ProductCostThrottle(clock=clock).check(ctx)).scope == "product_cost"
    assert run(UserCostThrottle(clock=clock).check(ctx)).scope == "user_cost"


# --- user_cost -----------------------------------------------------------------------------


def test_user_cost_burst_then_sustained(project, settings):
    settings.LLM_GATEWAY_PRODUCT_COST_USD = 10**6  # keep the product's own limit out of the way
    clock = Clock(1_800_000_000)
    throttle = UserCostThrottle(clock=clock)
    me, other = context(project, "k", user_id=1), context(project, "k", user_id=2)

    spend(me, "99.99", now=clock())
    assert run(throttle.check(me)) is None
    spend(me, "0.01", now=clock())  # $100 in 24 h: the burst limit
    denial = run(throttle.check(me))
    assert denial.scope == "user_cost" and "burst spending limit of $100.00 per 24 hours" in denial.message
    assert 0 < denial.retry_after <= DAY
    assert run(throttle.check(other)) is None  # per user

    # $95 a day for 10 more days: under the burst each day, over $1000 in 30 days at the end.
    for _ in range(10):
        clock.advance(DAY + 3600)
        assert run(throttle.check(me)) is None
        spend(me, "95", now=clock())
    clock.advance(DAY + 3600)  # the burst window has moved on
    denial = run(throttle.check(me))
    assert denial.scope == "user_cost" and "sustained spending limit of $1,000.00 per 30 days" in denial.message
    assert denial.retry_after > DAY


def test_user_cost_counts_the_end_user_when_there_is_no_key_owner(project, settings):
    settings.LLM_GATEWAY_USER_BURST_USD = 1
    clock = Clock(1_800_000_000)
    throttle = UserCostThrottle(clock=clock)
    alice = context(project, "phs_t", kind="server_token", end_user="alice")
    bob = context(project, "phs_t", kind="server_token", end_user="bob")
    spend(alice, "1", now=clock())
    assert run(throttle.check(alice)).scope == "user_cost"
    assert run(throttle.check(bob)) is None
    # A server token with no end user is nobody's: only the product's window applies.
    anonymous = context(project, "phs_t", kind="server_token")
    spend(anonymous, "50", now=clock())
    assert run(throttle.check(anonymous)) is None


def test_the_key_owner_wins_over_a_caller_named_end_user(project, settings):
    """A caller cannot escape its own limit by naming a new end user on each call."""
    settings.LLM_GATEWAY_USER_BURST_USD = 1
    clock = Clock(1_800_000_000)
    spend(context(project, "k", user_id=5, end_user="a"), "1", now=clock())
    assert run(UserCostThrottle(clock=clock).check(context(project, "k", user_id=5, end_user="b"))).scope == "user_cost"


def test_cost_throttles_allow_when_redis_is_unreachable(project, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = 0.3
    ctx = context(project, "k", user_id=1)
    with caplog.at_level(logging.ERROR, logger="products.llm_gateway.throttles"):
        assert run(ProductCostThrottle().check(ctx)) is None
        assert run(UserCostThrottle().check(ctx)) is None
    assert "cost windows unreadable" in caplog.text


# --- record_spend ----------------------------------------------------------------------------


def test_record_spend_counts_every_window_and_the_live_counter_in_micro_usd(project, redis_db):
    clock = Clock(1_800_000_000)
    ctx = context(project, "k", user_id=9)
    spend(ctx, "0.0123456", credits=1, now=clock())
    keys = sorted(k.decode() for k in redis_db.keys("@posthog/llm-gateway-cost/*"))
    limits = limits_for("slack_app")
    assert keys == sorted([
        f"@posthog/llm-gateway-cost/product/slack_app/{DAY}/{int(clock() // limits.product.bucket_seconds)}",
        f"@posthog/llm-gateway-cost/user/slack_app/u9/{DAY}/{int(clock() // limits.user_burst.bucket_seconds)}",
        f"@posthog/llm-gateway-cost/user/slack_app/u9/{30 * DAY}/{int(clock() // limits.user_sustained.bucket_seconds)}",
    ])
    assert {int(redis_db.get(k)) for k in keys} == {12346}
    # Each bucket lives as long as its window plus one bucket, then expires by itself.
    assert all(0 < redis_db.ttl(k) <= 30 * DAY + limits.user_sustained.bucket_seconds for k in keys)
    assert billing.live_credits(project.organization_id).used == 1


def test_a_batch_of_calls_adds_up_per_bucket_and_per_organization(project, accounts, redis_db):
    clock = Clock(1_800_000_000)
    other = accounts.project(accounts.organization())
    batch = [
        (context(project, "k", user_id=9), Spend(cost_usd=Decimal("0.000002"), credits=1)),
        (context(project, "k", user_id=9), Spend(cost_usd=Decimal("0.000003"), credits=2)),
        (context(project, "k", user_id=10), Spend(cost_usd=Decimal("0.000005"), credits=4)),
        (context(other, "k", user_id=11), Spend(cost_usd=Decimal("0.000007"), credits=8)),
    ]
    run(record_spends(batch, now=clock()))
    limits = limits_for("slack_app")
    product_key = f"@posthog/llm-gateway-cost/product/slack_app/{DAY}/{int(clock() // limits.product.bucket_seconds)}"
    user9_key = f"@posthog/llm-gateway-cost/user/slack_app/u9/{DAY}/{int(clock() // limits.user_burst.bucket_seconds)}"
    assert int(redis_db.get(product_key)) == 17  # every call of the product, in micro-USD
    assert int(redis_db.get(user9_key)) == 5  # user 9's two calls
    assert billing.live_credits(project.organization_id).used == 7
    assert billing.live_credits(other.organization_id).used == 8


def test_record_spend_never_raises(project, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = 0.3
    with caplog.at_level(logging.ERROR, logger="products.llm_gateway.throttles"):
        spend(context(project, "k", user_id=1), "1", credits=100)
    assert "could not count spend" in caplog.text


def test_a_free_call_writes_nothing(project, redis_db):
    spend(context(project, "k", user_id=1), "0", credits=0)
    assert redis_db.dbsize() == 0


# --- the runner ------------------------------------------------------------------------------


class Fixed:
    def __init__(self, scope, deny, delay=0.0, error=None):
        self.scope, self.deny, self.delay, self.error = scope, deny, delay, error
        self.started = None

    async def check(self, ctx):
        self.started = time.monotonic()
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return Denial(self.scope, f"{self.scope} says no", 7) if self.deny else None


def test_the_first_denial_in_list_order_wins_and_all_run_concurrently(project):
    chain = [Fixed("a", False, 0.3), Fixed("b", True, 0.3), Fixed("c", True, 0.0)]
    started = time.monotonic()
    denial = run(check_throttles(context(project, "k"), chain))
    assert denial == Denial("b", "b says no", 7)  # not c, although c answered first
    assert time.monotonic() - started < 0.55  # concurrently: not 0.6 s
    assert max(t.started for t in chain) - min(t.started for t in chain) < 0.1


def test_no_denial_is_none(project):
    assert run(check_throttles(context(project, "k"), [Fixed("a", False), Fixed("b", False)])) is None


def test_the_default_chain_order(project):
    assert [t.scope for t in th.THROTTLES] == ["ai_credits", "live_credits", "product_cost", "user_cost"]


def test_ai_credits_wins_over_the_cost_throttles(project):
    limit(project)
    spend(context(project, "k", user_id=1), "2000")
    assert run(check_throttles(context(project, "k", user_id=1))).scope == "ai_credits"
    assert run(check_throttles(context(project, "k", user_id=1, billable=False, product="slack_app"))).scope == "product_cost"


def test_a_throttle_that_raises_refuses_billable_calls_only(project, caplog):
    chain = [Fixed("boom", False, error=RuntimeError("bug")), Fixed("b", False)]
    with caplog.at_level(logging.ERROR, logger="products.llm_gateway.throttles"):
        denial = run(check_throttles(context(project, "k"), chain))
        assert denial.scope == "boom" and denial.retry_after >= 1
        assert run(check_throttles(context(project, "k", billable=False), chain)) is None
    assert "throttle boom failed" in caplog.text


def test_denials_are_logged_and_counted(project, caplog):
    before = th.DENIALS["b"]
    with caplog.at_level(logging.WARNING, logger="products.llm_gateway.throttles"):
        run(check_throttles(context(project, "k", user_id=4), [Fixed("b", True)]))
    assert th.DENIALS["b"] == before + 1
    assert f"throttle denied: scope=b product=slack_app project={project.id}" in caplog.text
