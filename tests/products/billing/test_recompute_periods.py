"""Billing-period arithmetic, and what the recomputation does when Redis is unreachable."""
from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from products.billing import quota_limiting as ql
from products.billing.models import QuotaLimitChange
from products.billing.plans import add_months, period_containing
from products.billing.recompute import update_all_orgs_billing_quotas

from .usage_helpers import make_plan, use


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


def test_add_months_clamps_to_the_end_of_short_months():
    assert add_months(utc(2026, 1, 31, 12), 1) == utc(2026, 2, 28, 12)
    assert add_months(utc(2028, 1, 31), 1) == utc(2028, 2, 29)
    assert add_months(utc(2026, 11, 15), 2) == utc(2027, 1, 15)
    assert add_months(utc(2026, 3, 31), -1) == utc(2026, 2, 28)


def test_periods_are_counted_from_the_anchor_without_drift():
    anchor = utc(2026, 1, 31, 9, 30)
    assert period_containing(anchor, 1, utc(2026, 2, 10)) == (utc(2026, 1, 31, 9, 30), utc(2026, 2, 28, 9, 30))
    # After February the period ends on the 31st again, not the 28th.
    assert period_containing(anchor, 1, utc(2026, 3, 29)) == (utc(2026, 2, 28, 9, 30), utc(2026, 3, 31, 9, 30))
    assert period_containing(anchor, 1, utc(2026, 3, 31, 9, 30)) == (utc(2026, 3, 31, 9, 30), utc(2026, 4, 30, 9, 30))
    assert period_containing(anchor, 3, utc(2026, 6, 1)) == (utc(2026, 4, 30, 9, 30), utc(2026, 7, 31, 9, 30))


def test_a_period_always_contains_now_and_ends_on_a_whole_second():
    anchor = utc(2025, 5, 17, 8, 0, 0, 123456)
    for days in range(0, 800, 7):
        now = utc(2025, 5, 17, 8) + timedelta(days=days, hours=3)
        start, end = period_containing(anchor, 1, now)
        assert start <= now < end
        assert start.microsecond == 0 and end.microsecond == 0


def test_an_anchor_in_the_future_gives_the_first_period():
    assert period_containing(utc(2027, 1, 1), 1, utc(2026, 12, 1)) == (utc(2027, 1, 1), utc(2027, 2, 1))


@pytest.mark.django_db
@pytest.mark.sqlite
def test_redis_down_writes_nothing_and_the_command_says_so(accounts, settings):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=1)
    use(project, 5)
    settings.REDIS_URL = "redis://127.0.0.1:1/6"  # nothing listens on port 1
    with pytest.raises(ql.QuotaStateUnavailable):
        update_all_orgs_billing_quotas()
    with pytest.raises(CommandError, match="Redis is unreachable, nothing was written"):
        call_command("update_quota_limits", stdout=io.StringIO(), stderr=io.StringIO())
    assert not QuotaLimitChange.objects.exists()
