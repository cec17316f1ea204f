"""The gateway's admin: overrides' changelist, the effective price table, usage per product and model."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from products.billing.facade import CheckedUsageEvent, record_usage_events
from products.llm_gateway.models import PriceOverride


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="op", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def usage(project, product, model, cost, billable, is_error=False):
    return CheckedUsageEvent(
        uuid=uuid.uuid4(), timestamp=timezone.now(), product=product, billable=billable, cost_usd=Decimal(cost),
        model=model, provider="openai", input_tokens=100, output_tokens=10, is_error=is_error,
    )


def test_usage_page_groups_calls_tokens_cost_and_credits_by_product_and_model(staff_client, accounts):
    project = accounts.project()
    record_usage_events(project, [
        usage(project, "slack_app", "gpt-4o", "0.10", True),
        usage(project, "slack_app", "gpt-4o", "0.05", True, is_error=True),
        usage(project, "posthog_code", "gpt-4o-mini", "0.02", False),
    ])
    page = staff_client.get("/admin/llm_gateway/priceoverride/usage/")
    assert page.status_code == 200
    rows = {(r.product, r.model): r for r in page.context["rows"]}
    assert (rows[("slack_app", "gpt-4o")].calls, rows[("slack_app", "gpt-4o")].errors) == (2, 1)
    assert rows[("slack_app", "gpt-4o")].credits == 15 and rows[("slack_app", "gpt-4o")].billable_credits == 15
    assert rows[("posthog_code", "gpt-4o-mini")].billable_credits == 0
    assert page.context["totals"]["calls"] == 3 and page.context["totals"]["input_tokens"] == 300
    assert b"slack_app" in page.content


def test_price_table_lists_allowed_models_with_package_prices_and_overrides(staff_client):
    PriceOverride.objects.create(provider="openai", model="gpt-4o-mini", input_usd_per_mtok=Decimal("9"), output_usd_per_mtok=Decimal("99"))
    page = staff_client.get("/admin/llm_gateway/priceoverride/price-table/")
    assert page.status_code == 200
    rows = {row.model: row for row, _ in page.context["rows"]}
    assert rows["gpt-4o-mini"].input_usd_per_mtok == Decimal("9") and rows["gpt-4o-mini"].override is not None
    assert rows["claude-sonnet-4-5"].input_usd_per_mtok == Decimal("3") and rows["claude-sonnet-4-5"].override is None
    assert b"override: openai gpt-4o-mini" in page.content


def test_the_overrides_changelist_links_both_pages(staff_client):
    page = staff_client.get("/admin/llm_gateway/priceoverride/")
    assert page.status_code == 200
    assert b"/admin/llm_gateway/priceoverride/price-table/" in page.content
    assert b"/admin/llm_gateway/priceoverride/usage/" in page.content


def test_the_pages_are_for_staff_only(client):
    assert client.get("/admin/llm_gateway/priceoverride/usage/").status_code == 302
