"""A limit set by hand holds until its time: the quota recomputation respects it.

Invariant: what an operator decides (`quota_limits set`, the admin's "Limit AI credits
until …", an override with an end) stands until its time, then the figures decide
again; `clear` lifts a hand-set limit for good, and one project's limit never spreads
to its siblings or to limits someone else set.
"""
from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from products.billing import quota_limiting as ql
from products.billing.models import QuotaLimitChange, QuotaOverride
from products.billing.quota_limiting import QuotaResource, is_team_limited
from products.billing.recompute import update_all_orgs_billing_quotas

from .usage_helpers import make_plan, use

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database
AI = QuotaResource.AI_CREDITS


def recompute(**kwargs):
    return update_all_orgs_billing_quotas(send_alerts=False, **kwargs)


def quota_limits(*args) -> str:
    out = io.StringIO()
    call_command("quota_limits", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def org(accounts):
    org = accounts.organization("Acme")
    make_plan(org, ai_credits=1000)
    return org


def test_a_limit_set_with_the_command_holds_through_the_recomputation(org, accounts):
    project = accounts.project(org, "Web")
    use(project, 10)  # far under the allowance: the figures alone would lift it
    out = quota_limits("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", "+2d", "--reason", "abuse")
    assert "keeps this limit until then" in out
    until = ql.get_limited_until(project.api_token, AI)

    summary = recompute()

    assert is_team_limited(project.api_token, AI)
    assert ql.get_limited_until(project.api_token, AI) == until
    assert summary.changes == [] and summary.lifted == 0
    assert list(QuotaLimitChange.objects.values_list("actor_label", flat=True)) == ["manage.py quota_limits"]
    override = QuotaOverride.objects.get()
    assert (override.project, override.mode, override.reason) == (project, "always_limit", "abuse")
    assert int(override.until.timestamp()) == int(until)


def test_a_limit_set_in_the_admin_holds_through_the_recomputation(admin_client, accounts):
    project = accounts.project(accounts.organization("No plan"), "Web")  # unlimited: nothing would limit it
    until = timezone.now() + timedelta(days=1)
    response = admin_client.post(
        "/admin/accounts/project/",
        {
            "action": "limit_ai_credits",
            "_selected_action": [project.pk],
            "apply": "1",
            "until": timezone.localtime(until).strftime("%Y-%m-%dT%H:%M"),
            "reason": "unpaid invoice",
        },
    )
    assert response.status_code == 302
    recompute()
    recompute()
    assert is_team_limited(project.api_token, AI)
    assert QuotaLimitChange.objects.filter(new_limited_until__isnull=True).count() == 0

    # "Lift AI-credit limit" ends it for good: the recomputation does not bring it back.
    admin_client.post("/admin/accounts/project/", {"action": "lift_ai_credit_limit", "_selected_action": [project.pk]})
    assert not QuotaOverride.objects.exists()
    recompute()
    assert not is_team_limited(project.api_token, AI)


def test_clear_lifts_a_hand_set_limit_and_the_recomputation_does_not_bring_it_back(org, accounts):
    project = accounts.project(org)
    quota_limits("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", "+2d")
    quota_limits("clear", "--project", str(project.pk), "--resource", "ai_credits", "--reason", "paid")
    assert not is_team_limited(project.api_token, AI)
    assert not QuotaOverride.objects.exists()
    recompute()
    assert not is_team_limited(project.api_token, AI)


def test_a_hand_set_limit_ends_at_its_time_and_then_the_figures_decide(org, accounts):
    project = accounts.project(org)
    quota_limits("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", "+1h")
    recompute(now=timezone.now() + timedelta(minutes=30))
    assert is_team_limited(project.api_token, AI)

    later = timezone.now() + timedelta(hours=2)
    summary = recompute(now=later)
    assert not is_team_limited(project.api_token, AI, now=later.timestamp())
    assert summary.swept == 1  # the expired member is cleaned up, not re-limited
    assert ql.get_limited_until(project.api_token, AI) is None

    use(project, 2000)  # now over the allowance: the figures limit it, the old override plays no part
    recompute(now=later)
    assert "Over the allowance" in QuotaLimitChange.objects.filter(project=project).first().reason


def test_the_longer_of_the_hand_set_limit_and_the_figures_wins(org, accounts):
    short, long_ = accounts.project(org), accounts.project(org)
    plan = org.billing_plan
    use(short, 2000)  # the organization is over its allowance: limited until the period ends
    quota_limits("set", "--project", str(short.pk), "--resource", "ai_credits", "--until", "+1h")
    beyond = (plan.period_end + timedelta(days=3)).isoformat()
    quota_limits("set", "--project", str(long_.pk), "--resource", "ai_credits", "--until", beyond)

    recompute()

    assert ql.get_limited_until(short.api_token, AI) == int(plan.period_end.timestamp())
    assert ql.get_limited_until(long_.api_token, AI) == int((plan.period_end + timedelta(days=3)).timestamp())


def test_a_hand_set_limit_on_one_project_does_not_spread_to_its_siblings(org, accounts):
    limited, sibling = accounts.project(org), accounts.project(org)
    quota_limits("set", "--project", str(limited.pk), "--resource", "ai_credits", "--until", "+1d")
    recompute()
    assert is_team_limited(limited.api_token, AI)
    assert not is_team_limited(sibling.api_token, AI)


def test_a_hand_set_limit_on_an_unmetered_resource_holds_and_leaves_other_limits_alone(org, accounts):
    project, sibling = accounts.project(org), accounts.project(org)
    elsewhere = int(time.time()) + 600
    ql.add_limited_tokens(QuotaResource.EVENTS, {sibling.api_token: elsewhere})  # written by PostHog
    quota_limits("set", "--project", str(project.pk), "--resource", "events", "--until", "+1d")
    recompute()
    assert is_team_limited(project.api_token, QuotaResource.EVENTS)
    assert ql.get_limited_until(sibling.api_token, QuotaResource.EVENTS) == elsewhere


def test_a_hand_limited_project_does_not_cut_its_organizations_grace_period_short(accounts):
    org = accounts.organization()
    limited, other = accounts.project(org), accounts.project(org)
    make_plan(org, llm_events=(2, 0, 3))
    quota_limits("set", "--project", str(limited.pk), "--resource", "llm_events", "--until", "+5d")
    use(other, 1)
    use(other, 1)
    recompute()
    assert is_team_limited(limited.api_token, QuotaResource.LLM_EVENTS)
    other_state = ql.get_quota_status(other.api_token)[QuotaResource.LLM_EVENTS]
    assert other_state.suspended_until is not None and not other_state.limited


def test_an_organization_override_with_an_end_applies_until_then(org, accounts):
    project = accounts.project(org)
    until = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    QuotaOverride.objects.create(organization=org, resource="ai_credits", mode="always_limit", until=until)
    recompute()
    assert ql.get_limited_until(project.api_token, AI) == int(until.timestamp())
    assert "until" in QuotaLimitChange.objects.get().reason

    after = until + timedelta(hours=1)
    recompute(now=after)
    assert not is_team_limited(project.api_token, AI, now=after.timestamp())


def test_a_never_limit_override_with_an_end_stops_protecting_then(org, accounts):
    project = accounts.project(org)
    use(project, 5000)
    until = timezone.now() + timedelta(days=1)
    QuotaOverride.objects.create(organization=org, resource="ai_credits", mode="never_limit", until=until)
    recompute()
    assert not is_team_limited(project.api_token, AI)
    after = until + timedelta(hours=1)
    recompute(now=after)
    assert is_team_limited(project.api_token, AI, now=after.timestamp())


def test_clear_warns_when_an_organization_override_will_limit_again(org, accounts):
    project = accounts.project(org)
    QuotaOverride.objects.create(organization=org, resource="ai_credits", mode="always_limit")
    recompute()
    out = quota_limits("clear", "--project", str(project.pk), "--resource", "ai_credits")
    assert "will limit it again at the next quota recomputation" in out
    assert QuotaOverride.objects.filter(project__isnull=True).exists()  # an organization's override is the admin's to remove


def test_a_suspension_set_by_hand_stays_the_recomputations_to_manage(org, accounts):
    project = accounts.project(org)
    out = quota_limits("set", "--project", str(project.pk), "--resource", "events", "--until", "+1d", "--suspended")
    assert "keeps this limit" not in out
    assert not QuotaOverride.objects.exists()


def test_an_operators_limit_never_shortens_one_the_figures_impose(org, accounts):
    project = accounts.project(org)
    use(project, 5000)  # over the allowance: limited until the period ends
    soon = timezone.now() + timedelta(hours=1)
    QuotaOverride.objects.create(organization=org, resource="ai_credits", mode="always_limit", until=soon)
    recompute()
    assert ql.get_limited_until(project.api_token, AI) == int(org.billing_plan.period_end.timestamp())
