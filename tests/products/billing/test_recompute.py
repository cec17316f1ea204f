"""update_all_orgs_billing_quotas(): usage over the period vs the allowance becomes Redis quota state.

Invariants: an organization over its allowance has every project limited until its
period ends; one under it (or in a new period) is not; only changes are written and
each is audited with its figures; a failure in one organization never unlimits it.
"""
from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from products.billing import quota_limiting as ql
from products.billing import recompute
from products.billing.models import BillingPlan, QuotaLimitChange, QuotaOverride, ResourceAllowance
from products.billing.quota_limiting import QuotaResource, is_team_limited
from products.billing.recompute import update_all_orgs_billing_quotas

from .usage_helpers import make_plan, use

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database
AI = QuotaResource.AI_CREDITS


def run(**kwargs):
    return update_all_orgs_billing_quotas(send_alerts=False, **kwargs)


def test_over_the_allowance_limits_every_project_until_the_period_ends(accounts):
    org = accounts.organization()
    p1, p2 = accounts.project(org), accounts.project(org)
    plan = make_plan(org, ai_credits=1000)
    use(p1, 600)
    use(p2, 400)

    summary = run()

    assert (summary.checked, summary.newly_limited, summary.lifted, summary.unchanged, summary.failed) == (1, 1, 0, 0, 0)
    assert is_team_limited(p1.api_token, AI) and is_team_limited(p2.api_token, AI)
    until = ql.get_limited_until(p1.api_token, AI)
    assert until == int(plan.period_end.timestamp())
    audit = QuotaLimitChange.objects.filter(resource="ai_credits").order_by("project_id")
    assert [a.project_id for a in audit] == [p1.id, p2.id]
    for row in audit:
        assert row.actor_label == "update_quota_limits" and row.actor is None
        assert row.old_limited_until is None and row.new_limited_until == plan.period_end
        assert "usage 1,000" in row.reason and "allowance 1,000" in row.reason
        assert f"{plan.period_start:%Y-%m-%d}" in row.reason


def test_under_the_allowance_nothing_is_limited_and_nothing_written(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=1000)
    use(project, 999)
    summary = run()
    assert (summary.newly_limited, summary.unchanged) == (0, 1)
    assert not is_team_limited(project.api_token, AI)
    assert not QuotaLimitChange.objects.exists()


def test_raising_the_allowance_lifts_the_limit_and_audits_it(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, ai_credits=100)
    use(project, 150)
    run()
    assert is_team_limited(project.api_token, AI)
    ResourceAllowance.objects.filter(plan=plan, resource="ai_credits").update(allowance=200)

    summary = run()

    assert (summary.lifted, summary.newly_limited) == (1, 0)
    assert not is_team_limited(project.api_token, AI)
    lifted = QuotaLimitChange.objects.filter(project=project).first()
    assert lifted.new_limited_until is None and lifted.old_limited_until == plan.period_end
    assert "Under the allowance" in lifted.reason and "usage 150" in lifted.reason and "allowance 200" in lifted.reason


def test_a_second_run_with_nothing_new_writes_nothing(accounts, redis_db):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=10)
    use(project, 50)
    run()
    audit_rows = QuotaLimitChange.objects.count()
    summary = run()
    assert (summary.newly_limited, summary.lifted, summary.unchanged, len(summary.changes)) == (0, 0, 1, 0)
    assert QuotaLimitChange.objects.count() == audit_rows
    assert is_team_limited(project.api_token, AI)


def test_non_billable_usage_and_usage_outside_the_period_do_not_count(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, ai_credits=100)
    use(project, 500, billable=False)
    use(project, 500, ts=plan.period_start - timedelta(seconds=1))
    use(project, 99, ts=plan.period_start)
    run()
    assert not is_team_limited(project.api_token, AI)
    use(project, 1)
    run()
    assert is_team_limited(project.api_token, AI)


def test_a_new_period_begins_when_the_old_one_ends_and_lifts_the_limit(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, anchor=timezone.now() - timedelta(days=20), ai_credits=100)
    use(project, 150)
    run()
    assert is_team_limited(project.api_token, AI)
    old_end = plan.period_end

    later = old_end + timedelta(hours=1)
    summary = run(now=later)

    # The limit ran out with the period (its score is the period end); the job sweeps it.
    assert summary.periods_rolled == 1 and summary.swept == 1 and summary.newly_limited == 0
    updated_before = plan.updated_at
    plan.refresh_from_db()
    assert plan.period_start == old_end and plan.period_end > later
    assert plan.updated_at > updated_before  # on SQLite too, where the roll-over is a bulk_update
    assert not is_team_limited(project.api_token, AI, now=later.timestamp())
    assert ql.get_limited_until(project.api_token, AI) is None


def test_the_overage_buffer_is_tolerated_before_limiting(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=(100, 20, 0))
    use(project, 119)
    run()
    assert not is_team_limited(project.api_token, AI)
    use(project, 1)
    run()
    assert is_team_limited(project.api_token, AI)
    assert "overage buffer 20" in QuotaLimitChange.objects.get().reason


def test_no_plan_or_no_allowance_is_unlimited(accounts):
    no_plan = accounts.project(accounts.organization())
    org = accounts.organization()
    unlimited = accounts.project(org)
    make_plan(org, ai_credits=None)
    use(no_plan, 10**9)
    use(unlimited, 10**9)
    summary = run()
    assert summary.checked == 2 and summary.unchanged == 2
    assert not is_team_limited(no_plan.api_token, AI) and not is_team_limited(unlimited.api_token, AI)


def test_operator_overrides_beat_the_figures(accounts):
    over_org, under_org = accounts.organization(), accounts.organization()
    over, under = accounts.project(over_org), accounts.project(under_org)
    make_plan(over_org, ai_credits=10)
    make_plan(under_org, ai_credits=10_000)
    use(over, 100)
    QuotaOverride.objects.create(organization=over_org, resource="ai_credits", mode="never_limit", reason="design partner")
    QuotaOverride.objects.create(organization=under_org, resource="ai_credits", mode="always_limit", reason="unpaid invoice")

    run()

    assert not is_team_limited(over.api_token, AI)
    assert is_team_limited(under.api_token, AI)
    assert "always limit" in QuotaLimitChange.objects.get(project=under).reason

    QuotaOverride.objects.filter(organization=under_org).delete()
    run()
    assert not is_team_limited(under.api_token, AI)


def test_an_always_limit_override_on_an_unmetered_resource_is_honoured_for_that_org_only(accounts):
    org, other_org = accounts.organization(), accounts.organization()
    project, other = accounts.project(org), accounts.project(other_org)
    until = int(time.time()) + 7200
    ql.add_limited_tokens(QuotaResource.EVENTS, {other.api_token: until})  # set by an operator by hand
    QuotaOverride.objects.create(organization=org, resource="events", mode="always_limit")
    run()
    assert is_team_limited(project.api_token, QuotaResource.EVENTS)
    assert ql.get_limited_until(other.api_token, QuotaResource.EVENTS) == until


def test_limits_on_resources_the_job_does_not_meter_are_left_alone(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    until = int(time.time()) + 3600
    ql.add_limited_tokens(QuotaResource.EVENTS, {project.api_token: until})
    run()
    assert ql.get_limited_until(project.api_token, QuotaResource.EVENTS) == until


def test_a_resource_with_a_grace_period_is_suspended_first_then_limited(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    plan = make_plan(org, llm_events=(2, 0, 3))
    use(project, 1)
    use(project, 1)
    now = timezone.now()

    run(now=now)

    llm = QuotaResource.LLM_EVENTS
    assert not is_team_limited(project.api_token, llm)
    grace_end = ql.get_limited_until(project.api_token, llm, ql.SUSPENDED)
    assert grace_end == pytest.approx((now + timedelta(days=3)).timestamp(), abs=1)
    assert QuotaLimitChange.objects.get().state == "suspended"

    summary = run(now=now + timedelta(days=1))  # still in the grace period: nothing changes
    assert not summary.changes

    after_grace = now + timedelta(days=3, minutes=1)
    run(now=after_grace)
    assert is_team_limited(project.api_token, llm, now=after_grace.timestamp())
    assert ql.get_limited_until(project.api_token, llm) == int(plan.period_end.timestamp())
    assert ql.get_limited_until(project.api_token, llm, ql.SUSPENDED) is None


def test_a_failing_organization_keeps_its_state_and_the_others_are_processed(accounts, caplog):
    """The failure is real: a plan row giving ai_credits a grace period, which the job refuses to apply."""
    broken_org, ok_org = accounts.organization("Broken"), accounts.organization("Fine")
    broken, ok = accounts.project(broken_org), accounts.project(ok_org)
    broken_plan = make_plan(broken_org, ai_credits=10)
    make_plan(ok_org, ai_credits=10)
    use(broken, 100)
    run()
    assert is_team_limited(broken.api_token, AI)
    audit_before = QuotaLimitChange.objects.filter(project=broken).count()

    # Now the broken org's usage is under a raised allowance, but its plan row is invalid:
    # lifting on bad data would silently unlimit it, so it must stay limited.
    ResourceAllowance.objects.filter(plan=broken_plan).update(allowance=1000, grace_period_days=2)
    use(ok, 100)
    summary = run()

    assert summary.failed == 1 and summary.checked == 2 and summary.newly_limited == 1
    assert summary.failures[0].organization_id == broken_org.id
    assert "ai_credits has no grace period" in summary.failures[0].error
    assert is_team_limited(broken.api_token, AI)
    assert QuotaLimitChange.objects.filter(project=broken).count() == audit_before
    assert is_team_limited(ok.api_token, AI)
    assert any("failed for organization" in r.message and str(broken_org.id) in r.message for r in caplog.records)


def test_an_unexpected_error_for_one_org_is_contained(accounts, monkeypatch):
    """Uses the job's own per-organization seam (`recompute.changes_for_org`) to raise for one org."""
    a, b = accounts.organization(), accounts.organization()
    pa, pb = accounts.project(a), accounts.project(b)
    make_plan(a, ai_credits=1)
    make_plan(b, ai_credits=1)
    use(pa, 5)
    use(pb, 5)
    original = recompute.changes_for_org

    def flaky(terms, *args, **kwargs):
        if terms.organization_id == a.id:
            raise RuntimeError("boom")
        return original(terms, *args, **kwargs)

    monkeypatch.setattr(recompute, "changes_for_org", flaky)
    summary = run()
    assert summary.failed == 1 and "RuntimeError: boom" in summary.failures[0].error
    assert not is_team_limited(pa.api_token, AI)  # untouched (it was not limited before)
    assert is_team_limited(pb.api_token, AI)


def test_expired_members_are_swept(accounts, redis_db):
    org = accounts.organization()
    project = accounts.project(org)
    past = int(time.time()) - 60
    ql.add_limited_tokens(AI, {project.api_token: past, "phc_deleted_project": past, "phc_live_elsewhere": past + 3600})
    summary = run()
    assert summary.swept == 2
    remaining = redis_db.zrange(ql.redis_key(AI), 0, -1)
    assert remaining == [b"phc_live_elsewhere"]


def test_dry_run_decides_but_writes_nothing(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=10)
    use(project, 20)
    summary = run(dry_run=True)
    assert summary.newly_limited == 1 and len(summary.changes) == 1
    assert not is_team_limited(project.api_token, AI)
    assert not QuotaLimitChange.objects.exists()


def _seed(accounts, n_orgs):
    for i in range(n_orgs):
        org = accounts.organization()
        make_plan(org, ai_credits=100, llm_events=(1000, 0, 2))
        for j in range(2):
            project = accounts.project(org)
            use(project, 80 if i % 2 else 10)
        if i % 3 == 0:
            QuotaOverride.objects.create(organization=org, resource="ai_credits", mode="never_limit")


def test_database_queries_do_not_grow_with_the_number_of_organizations(accounts):
    _seed(accounts, 3)
    with CaptureQueriesContext(connection) as small:
        run()
    QuotaLimitChange.objects.all().delete()
    _seed(accounts, 30)
    with CaptureQueriesContext(connection) as large:
        run()
    assert len(large) == len(small), [q["sql"][:80] for q in large.captured_queries]


def test_the_command_prints_a_summary_table_and_supports_dry_run(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=10)
    use(project, 20)
    out, err = io.StringIO(), io.StringIO()
    call_command("update_quota_limits", "--dry-run", stdout=out, stderr=err)
    text = out.getvalue()
    assert "dry run" in text
    for label in ("organizations checked", "newly limited", "lifted", "unchanged", "failed"):
        assert label in text
    assert not is_team_limited(project.api_token, AI)

    out = io.StringIO()
    call_command("update_quota_limits", stdout=out, stderr=io.StringIO())
    lines = {line.split("  ")[0].strip(): line.split()[-1] for line in out.getvalue().splitlines() if "  " in line}
    assert lines["newly limited"] == "1" and lines["organizations checked"] == "1"
    assert is_team_limited(project.api_token, AI)


def test_the_command_reports_failures_and_exits_non_zero(accounts):
    from django.core.management.base import CommandError

    org = accounts.organization()
    accounts.project(org)
    plan = make_plan(org)
    ResourceAllowance.objects.create(plan=plan, resource="ai_credits", allowance=-5)
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 organization"):
        call_command("update_quota_limits", stdout=io.StringIO(), stderr=err)
    assert f"FAILED organization #{org.id}" in err.getvalue() and "cannot be negative" in err.getvalue()


def test_the_beat_schedule_runs_the_task_at_10_25_40_55(settings):
    from products.billing.tasks import update_quota_limits

    entry = django_settings.CELERY_BEAT_SCHEDULE["update-quota-limits"]
    assert entry["task"] == update_quota_limits.name
    assert entry["schedule"].minute == {10, 25, 40, 55}
    assert entry["schedule"].hour == set(range(24))


def test_the_celery_task_runs_the_recomputation(accounts):
    from products.billing.tasks import update_quota_limits

    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=10)
    use(project, 20)
    result = update_quota_limits.apply().get()
    assert result["newly limited"] == 1
    assert is_team_limited(project.api_token, AI)


def test_a_concurrent_run_is_refused(accounts, redis_db):
    lock = redis_db.lock(recompute.LOCK_KEY, timeout=60)
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(recompute.RecomputeAlreadyRunning):
            run()
    finally:
        lock.release()


def test_plan_periods_default_to_rolling_months_from_the_organization(accounts):
    org = accounts.organization()
    plan = BillingPlan.objects.create(organization=org)
    assert plan.period_start <= timezone.now() < plan.period_end
    assert plan.period_start.day == org.created_at.day or plan.period_start == org.created_at


def test_celery_finds_the_task():
    from posthog_app.celery import app

    app.loader.import_default_modules()
    assert "products.billing.tasks.update_quota_limits" in app.tasks


def test_an_override_row_with_an_unknown_resource_fails_only_its_organization(accounts):
    """A row written behind the admin's back (unknown resource) must not stop the whole run."""
    bad_org, good_org = accounts.organization(), accounts.organization()
    bad, good = accounts.project(bad_org), accounts.project(good_org)
    make_plan(bad_org, ai_credits=1)
    make_plan(good_org, ai_credits=1)
    use(bad, 5)
    use(good, 5)
    QuotaOverride.objects.create(organization=bad_org, resource="tokens_of_doom", mode="always_limit")
    summary = run()
    assert summary.failed == 1 and summary.failures[0].organization_id == bad_org.id
    assert "tokens_of_doom" in summary.failures[0].error
    assert not is_team_limited(bad.api_token, AI)  # left as it was: never limited
    assert is_team_limited(good.api_token, AI)


def test_llm_events_are_managed_only_where_the_plan_has_an_allowance_for_them(accounts):
    org_without, org_with = accounts.organization(), accounts.organization()
    without, with_ = accounts.project(org_without), accounts.project(org_with)
    make_plan(org_without, ai_credits=1000)
    make_plan(org_with, ai_credits=1000, llm_events=2)
    until = int(time.time()) + 7200
    ql.add_limited_tokens(QuotaResource.LLM_EVENTS, {without.api_token: until})  # set by hand
    for project in (without, with_):
        use(project, 1)
        use(project, 1)
    run()
    assert ql.get_limited_until(without.api_token, QuotaResource.LLM_EVENTS) == until
    assert is_team_limited(with_.api_token, QuotaResource.LLM_EVENTS)
    assert not is_team_limited(with_.api_token, AI)
