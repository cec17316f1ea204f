"""Operators edit plans, allowances and overrides in the admin; usage and sent alerts are read-only."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from products.billing.models import BillingPlan, QuotaOverride, ResourceAllowance, UsageAlert, UsageEvent

from .usage_helpers import make_plan, use

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    client.user = user
    return client


def test_a_plan_with_an_allowance_is_created_in_the_admin(admin_client, accounts):
    org = accounts.organization()
    response = admin_client.post(
        "/admin/billing/billingplan/add/",
        {
            "organization": org.id,
            "name": "team",
            "period_months": 1,
            "allowances-TOTAL_FORMS": 1,
            "allowances-INITIAL_FORMS": 0,
            "allowances-0-resource": "ai_credits",
            "allowances-0-allowance": 5000,
            "allowances-0-overage_buffer": 100,
            "allowances-0-grace_period_days": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    plan = BillingPlan.objects.get(organization=org)
    assert plan.period_start and plan.period_end and plan.period_start < plan.period_end
    allowance = plan.allowances.get()
    assert (allowance.resource, allowance.allowance, allowance.overage_buffer) == ("ai_credits", 5000, 100)


def test_the_admin_refuses_a_grace_period_for_ai_credits(admin_client, accounts):
    org = accounts.organization()
    response = admin_client.post(
        "/admin/billing/billingplan/add/",
        {
            "organization": org.id,
            "name": "team",
            "period_months": 1,
            "allowances-TOTAL_FORMS": 1,
            "allowances-INITIAL_FORMS": 0,
            "allowances-0-resource": "ai_credits",
            "allowances-0-allowance": 5000,
            "allowances-0-overage_buffer": 0,
            "allowances-0-grace_period_days": 3,
        },
    )
    assert response.status_code == 200
    assert "ai_credits has no grace period" in response.content.decode()
    assert not BillingPlan.objects.exists()


def test_model_validation_matches_what_the_job_accepts(accounts):
    plan = make_plan(accounts.organization())
    with pytest.raises(ValidationError):
        ResourceAllowance(plan=plan, resource="ai_credits", allowance=-1).full_clean()
    ResourceAllowance(plan=plan, resource="llm_events", allowance=10, grace_period_days=3).full_clean()


def test_an_override_records_who_set_it(admin_client, accounts):
    org = accounts.organization()
    response = admin_client.post(
        "/admin/billing/quotaoverride/add/",
        {"organization": org.id, "resource": "ai_credits", "mode": "never_limit", "reason": "design partner"},
    )
    assert response.status_code == 302
    override = QuotaOverride.objects.get()
    assert override.created_by == admin_client.user and override.mode == "never_limit"


def test_usage_and_alert_lists_render_and_cannot_be_edited(admin_client, accounts):
    org = accounts.organization()
    event = use(accounts.project(org), 42)
    UsageAlert.objects.create(organization=org, period_start=event.timestamp, threshold=80, usage=80, allowance=100)
    assert admin_client.get("/admin/billing/usageevent/").status_code == 200
    assert admin_client.get("/admin/billing/usagealert/").status_code == 200
    assert admin_client.get("/admin/billing/billingplan/").status_code == 200
    assert admin_client.get("/admin/billing/usageevent/add/").status_code == 403
    admin_client.post(f"/admin/billing/usageevent/{event.pk}/change/", {"credits": 0})
    assert UsageEvent.objects.get(pk=event.pk).credits == 42
