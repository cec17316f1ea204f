"""GET /billing/: where the denial's "Top up at ..." link takes a member.

A member sees the plan, the period, AI credits used against the allowance (with a daily
chart drawn without any CDN), whether the organization is limited and until when, and
what to do next; anyone else learns nothing. Marked `sqlite`: `make run` serves it from SQLite.
"""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from products.billing import quota_limiting as ql
from products.billing.models import QuotaOverride
from tests.posthog_app.signin import sign_in
from tests.products.billing.usage_helpers import make_plan, use

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

ROOT = Path(__file__).resolve().parents[3]


def logged_in(user) -> Client:
    """Signed in the way a member is: through /login/, with the form's CSRF token."""
    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, user.username, "pw", next_url="/billing/")["Location"] == "/billing/"
    return client


@pytest.fixture
def org_with_usage(accounts):
    org = accounts.organization(name="Acme")
    project = accounts.project(org)
    member = accounts.user(org)
    make_plan(org, anchor=timezone.now() - timedelta(days=3), ai_credits=(1000, 100, 0))
    now = timezone.now()
    use(project, 300, ts=now - timedelta(days=2))
    use(project, 200, ts=now - timedelta(days=1))
    use(project, 150, ts=now - timedelta(minutes=5))
    use(project, 999, ts=now - timedelta(minutes=5), billable=False)  # not billed: not counted
    return org, project, member


def test_a_member_sees_plan_period_credits_against_the_allowance_and_a_daily_chart(org_with_usage):
    org, _, member = org_with_usage
    response = logged_in(member).get("/billing/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme" in html and "default" in html  # the plan's name
    assert re.search(r'class="credits-used">650<', html)
    assert 'class="allowance">1000<' in html and "100 overage buffer: limited at 1100" in html and "65 %" in html
    summary = response.context["summaries"][0]
    assert summary.period_start <= timezone.now() < summary.period_end
    assert summary.period_start.strftime("%Y-%m-%d %H:%M") in html
    # The chart: one bar per day of the period so far, the tallest day full height.
    bars = re.findall(r"<rect [^>]*height=\"([0-9.]+)\"", html)
    assert len(bars) == len(summary.daily) >= 3
    assert max(float(h) for h in bars) == 100.0
    assert "300 credits" in html and "highest day: 300 credits" in html
    assert "Not limited" in html and "350 AI credits remain until" in html


def test_the_page_loads_nothing_from_another_site(org_with_usage):
    _, _, member = org_with_usage
    html = logged_in(member).get("/billing/").content.decode()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_a_limited_organization_sees_until_when_and_what_to_do(org_with_usage):
    org, project, member = org_with_usage
    until = timezone.now() + timedelta(days=5)
    ql.add_limited_tokens(ql.QuotaResource.AI_CREDITS, {project.api_token: until})
    html = logged_in(member).get("/billing/").content.decode()
    stamp = until.strftime("%Y-%m-%d %H:%M")
    assert "Limited</strong> until" in html and stamp in html
    assert f"The limit lifts on {stamp} UTC" in html
    assert "ask an admin to raise the allowance" in html


def test_an_operator_limit_says_who_to_ask(org_with_usage):
    org, project, member = org_with_usage
    QuotaOverride.objects.create(organization=org, resource="ai_credits", mode=QuotaOverride.Mode.ALWAYS_LIMIT)
    ql.add_limited_tokens(ql.QuotaResource.AI_CREDITS, {project.api_token: timezone.now() + timedelta(days=1)})
    html = logged_in(member).get("/billing/").content.decode()
    assert "An operator has limited AI work for this organization" in html


def test_near_the_allowance_the_page_warns(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    make_plan(org, ai_credits=100)
    use(project, 85)
    html = logged_in(accounts.user(org)).get("/billing/").content.decode()
    assert "85 % of the allowance is used" in html


def test_without_a_plan_the_organization_is_unlimited(accounts):
    org = accounts.organization(name="Free")
    project = accounts.project(org)
    use(project, 42, ts=timezone.now())  # the organization (and so its first period) began a moment ago
    html = logged_in(accounts.user(org)).get("/billing/").content.decode()
    assert "no plan (unlimited)" in html and 'class="credits-used">42<' in html
    assert "no AI-credit limit" in html


def test_when_redis_cannot_be_read_the_state_is_unknown_not_unlimited(org_with_usage, monkeypatch):
    _, _, member = org_with_usage

    def down(token, now=None):
        raise ql.QuotaStateUnavailable("connection refused")

    monkeypatch.setattr(ql, "get_quota_status", down)
    response = logged_in(member).get("/billing/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "unknown" in html and "Not limited" not in html


def test_a_member_of_several_organizations_sees_each_or_picks_one(accounts):
    first, second = accounts.organization(name="First"), accounts.organization(name="Second")
    user = accounts.user(first)
    from products.accounts.facade import OrganizationMembership

    OrganizationMembership.objects.create(organization=second, user=user)
    client = logged_in(user)
    both = client.get("/billing/").content.decode()
    assert f'id="organization-{first.pk}"' in both and f'id="organization-{second.pk}"' in both
    one = client.get(f"/billing/?organization={second.pk}").content.decode()
    assert f'id="organization-{second.pk}"' in one and f'id="organization-{first.pk}"' not in one


def test_anonymous_visitors_are_sent_to_the_members_login_page():
    response = Client().get("/billing/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/billing/"


def test_non_members_get_a_404_and_no_figures(org_with_usage, accounts):
    org, _, _ = org_with_usage
    outsider = accounts.user(accounts.organization(name="Other"))
    response = logged_in(outsider).get(f"/billing/?organization={org.pk}")
    assert response.status_code == 404 and b"Acme" not in response.content
    assert logged_in(accounts.user()).get("/billing/").status_code == 404  # in no organization at all
    assert logged_in(outsider).get("/billing/?organization=not-a-number").status_code == 404


def test_the_default_billing_url_is_this_page():
    """The denial's "Top up at ..." link: SITE_URL/billing/ unless BILLING_URL says otherwise."""
    code = (
        "import django; django.setup(); from django.conf import settings; from django.urls import resolve; "
        "from urllib.parse import urlsplit; print(settings.BILLING_URL); print(resolve(urlsplit(settings.BILLING_URL).path).url_name)"
    )
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "posthog_app.settings", "SITE_URL": "https://code.example.com",
           "DATABASE_URL": "sqlite:////tmp/unused.sqlite3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["https://code.example.com/billing/", "billing"]


def test_the_test_settings_billing_url_without_a_slash_also_reaches_the_page(settings):
    # Slack messages already posted may carry .../billing: it redirects to the page.
    response = Client().get("/billing")
    assert response.status_code == 301 and response["Location"] == "/billing/"
