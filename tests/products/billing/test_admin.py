"""The project page shows live quota state; admin actions limit and lift AI credits.

Actions write Redis (seen by `is_team_limited`, the function every gate calls) and the
audit log under the operator's name; the audit log itself can be read but never edited.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from products.billing.models import QuotaLimitChange
from products.billing.quota_limiting import QuotaResource, is_team_limited
from products.billing.services import Actor, set_quota_limit

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database

CHANGELIST = "/admin/accounts/project/"
DOWN_REDIS = "redis://127.0.0.1:1/3"


def form_time(when) -> str:
    return timezone.localtime(when).strftime("%Y-%m-%dT%H:%M")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def projects(accounts):
    org = accounts.organization("Acme")
    return accounts.project(org, "Web"), accounts.project(org, "Mobile")


def test_the_project_page_shows_each_resource_state_read_from_redis(admin_client, projects):
    project, _ = projects
    until = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    set_quota_limit(project, QuotaResource.AI_CREDITS, until, reason="over plan", actor=Actor(label="test"))
    set_quota_limit(
        project, QuotaResource.EVENTS, until, reason="grace", actor=Actor(label="test"), state="suspended"
    )

    body = admin_client.get(f"/admin/accounts/project/{project.pk}/change/").content.decode()
    for resource in QuotaResource:
        assert f"<td>{resource.value}</td>" in body
    assert f"<td>ai_credits</td><td>limited</td><td>{until:%Y-%m-%d %H:%M:%S} UTC</td>" in body
    assert "<td>events</td><td>suspended</td><td>—</td>" in body
    assert "<td>recordings</td><td>ok</td>" in body
    # The recent audit rows are on the page too.
    assert "over plan" in body and "grace" in body


def test_the_project_page_says_unavailable_when_redis_is_down(admin_client, projects, settings):
    project, _ = projects
    settings.REDIS_URL = DOWN_REDIS
    response = admin_client.get(f"/admin/accounts/project/{project.pk}/change/")
    assert response.status_code == 200
    assert "unavailable" in response.content.decode()


def test_the_limit_action_asks_for_a_time_and_reason_first(admin_client, projects):
    web, mobile = projects
    response = admin_client.post(
        CHANGELIST, {"action": "limit_ai_credits", "_selected_action": [web.pk, mobile.pk]}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="until"' in body and 'name="reason"' in body
    assert web.api_token in body and mobile.api_token in body
    assert not is_team_limited(web.api_token, QuotaResource.AI_CREDITS)
    assert not QuotaLimitChange.objects.exists()


def test_the_limit_action_limits_every_selected_project_and_records_the_operator(
    admin_client, admin_user, projects, accounts
):
    web, mobile = projects
    untouched = accounts.project(web.organization, "Untouched")
    until = timezone.now() + timedelta(days=2)
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "limit_ai_credits",
            "_selected_action": [web.pk, mobile.pk],
            "apply": "1",
            "until": form_time(until),
            "reason": "unpaid invoice",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert any("AI credits limited until" in m for m in messages_of(response))

    assert is_team_limited(web.api_token, QuotaResource.AI_CREDITS)
    assert is_team_limited(mobile.api_token, QuotaResource.AI_CREDITS)
    assert not is_team_limited(untouched.api_token, QuotaResource.AI_CREDITS)
    assert not is_team_limited(web.api_token, QuotaResource.EVENTS)

    changes = QuotaLimitChange.objects.order_by("project_id")
    assert [c.project for c in changes] == [web, mobile]
    for change in changes:
        assert change.resource == "ai_credits"
        assert change.actor == admin_user
        assert change.reason == "unpaid invoice"
        assert change.old_limited_until is None
        assert abs(change.new_limited_until - until) < timedelta(minutes=1)


def test_a_time_in_the_past_is_a_form_error_and_changes_nothing(admin_client, projects):
    web, _ = projects
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "limit_ai_credits",
            "_selected_action": [web.pk],
            "apply": "1",
            "until": form_time(timezone.now() - timedelta(hours=1)),
            "reason": "oops",
        },
    )
    assert response.status_code == 200
    assert "must be in the future" in response.content.decode()
    assert not is_team_limited(web.api_token, QuotaResource.AI_CREDITS)
    assert not QuotaLimitChange.objects.exists()


def test_a_missing_reason_is_a_form_error(admin_client, projects):
    web, _ = projects
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "limit_ai_credits",
            "_selected_action": [web.pk],
            "apply": "1",
            "until": form_time(timezone.now() + timedelta(days=1)),
            "reason": "",
        },
    )
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not is_team_limited(web.api_token, QuotaResource.AI_CREDITS)


def test_the_lift_action_lifts_the_limit_and_records_the_operator(admin_client, admin_user, projects):
    web, mobile = projects
    until = timezone.now() + timedelta(days=1)
    for project in projects:
        set_quota_limit(project, QuotaResource.AI_CREDITS, until, reason="over", actor=Actor(label="job"))

    response = admin_client.post(CHANGELIST, {"action": "lift_ai_credit_limit", "_selected_action": [web.pk]})
    assert response.status_code == 302
    assert any("AI-credit limit lifted for: Web" in m for m in messages_of(response))

    assert not is_team_limited(web.api_token, QuotaResource.AI_CREDITS)
    assert is_team_limited(mobile.api_token, QuotaResource.AI_CREDITS)
    lift = QuotaLimitChange.objects.filter(project=web).first()
    assert lift.new_limited_until is None
    assert abs(lift.old_limited_until - until) < timedelta(seconds=1)
    assert lift.actor == admin_user
    assert lift.reason == "lifted in admin"


def test_an_action_while_redis_is_down_reports_an_error_and_records_nothing(admin_client, projects, settings):
    web, _ = projects
    settings.REDIS_URL = DOWN_REDIS
    response = admin_client.post(CHANGELIST, {"action": "lift_ai_credit_limit", "_selected_action": [web.pk]})
    assert response.status_code == 302
    assert any("Redis could not be reached" in m for m in messages_of(response))
    assert not QuotaLimitChange.objects.exists()


# --- The audit log --------------------------------------------------------------------------


@pytest.fixture
def change(projects):
    web, _ = projects
    return set_quota_limit(
        web, QuotaResource.AI_CREDITS, timezone.now() + timedelta(days=1), reason="audit me", actor=Actor(label="job")
    )


def test_the_audit_log_can_be_listed_filtered_searched_and_viewed(admin_client, change, projects):
    _, mobile = projects
    set_quota_limit(
        mobile, QuotaResource.EVENTS, timezone.now() + timedelta(days=1), reason="other", actor=Actor(label="job")
    )
    base = "/admin/billing/quotalimitchange/"
    assert admin_client.get(base).status_code == 200

    by_resource = admin_client.get(base + "?resource=ai_credits").content.decode()
    assert "audit me" in by_resource and "other" not in by_resource
    by_token = admin_client.get(base + f"?q={mobile.api_token}").content.decode()
    assert "other" in by_token and "audit me" not in by_token
    by_name = admin_client.get(base + "?q=Web").content.decode()
    assert "audit me" in by_name and "other" not in by_name
    assert "audit me" in admin_client.get(base + "?state=limited&change=set").content.decode()
    assert "audit me" not in admin_client.get(base + "?change=lifted").content.decode()

    view = admin_client.get(f"{base}{change.pk}/change/")
    assert view.status_code == 200
    assert "audit me" in view.content.decode()
    assert 'name="reason"' not in view.content.decode()


def test_the_audit_log_cannot_be_added_changed_or_deleted(admin_client, change):
    base = "/admin/billing/quotalimitchange/"
    assert admin_client.get(base + "add/").status_code == 403
    assert admin_client.post(base + "add/", {"reason": "forged"}).status_code == 403
    assert admin_client.post(f"{base}{change.pk}/change/", {"reason": "rewritten"}).status_code == 403
    assert admin_client.get(f"{base}{change.pk}/delete/").status_code == 403
    assert admin_client.post(f"{base}{change.pk}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post(base, {"action": "delete_selected", "_selected_action": [change.pk], "post": "yes"})

    change.refresh_from_db()
    assert change.reason == "audit me"
    assert QuotaLimitChange.objects.count() == 1


# --- What the audit log says: the action, not the state (issue 7, item 11) --------------------


def test_the_audit_log_names_each_action(admin_client, projects, accounts):
    from products.billing.recompute import update_all_orgs_billing_quotas
    from products.billing.services import clear_quota_limit

    from .usage_helpers import make_plan, use

    web, mobile = projects
    actor = Actor(label="ops")
    until = timezone.now() + timedelta(days=1)
    limited = set_quota_limit(web, QuotaResource.AI_CREDITS, until, reason="r1", actor=actor)
    lifted = clear_quota_limit(web, QuotaResource.AI_CREDITS, reason="r2", actor=actor)
    suspended = set_quota_limit(web, QuotaResource.EVENTS, until, reason="r3", actor=actor, state="suspended")
    unsuspended = clear_quota_limit(web, QuotaResource.EVENTS, reason="r4", actor=actor, state="suspended")
    assert [c.action for c in (limited, lifted, suspended, unsuspended)] == [
        "limited", "lifted", "suspended", "suspension lifted"
    ]
    assert str(lifted).startswith(f"{web} ai_credits: lifted (was until ")
    assert str(limited).startswith(f"{web} ai_credits: limited until ")
    assert str(unsuspended) == f"{web} events: suspension lifted (was until {until:%Y-%m-%d %H:%M} UTC)"

    # An automatic lift by the recomputation reads "lifted" too.
    org = web.organization
    plan = make_plan(org, ai_credits=100)
    use(mobile, 500)
    update_all_orgs_billing_quotas(send_alerts=False)
    plan.allowances.update(allowance=10_000)
    update_all_orgs_billing_quotas(send_alerts=False)
    auto_lift = QuotaLimitChange.objects.filter(project=mobile).first()
    assert auto_lift.action == "lifted" and auto_lift.actor_label == "update_quota_limits"

    body = admin_client.get("/admin/billing/quotalimitchange/").content.decode()
    for action in ('<td class="field-action">limited</td>', '<td class="field-action">lifted</td>',
                   '<td class="field-action">suspended</td>', '<td class="field-action">suspension lifted</td>'):
        assert action in body
    page = admin_client.get(f"/admin/accounts/project/{web.pk}/change/").content.decode()
    assert "<th>action</th>" in page and "<td>lifted</td>" in page and "<td>suspension lifted</td>" in page


# --- The billing plan admin (issue 7, item 11) ---------------------------------------------------


def test_the_plan_form_picks_the_organization_by_autocomplete_and_states_the_units(admin_client):
    body = admin_client.get("/admin/billing/billingplan/add/").content.decode()
    assert 'name="organization"' in body and "admin-autocomplete" in body
    assert 'data-field-name="organization"' in body
    assert "AI credits for ai_credits (1 credit = $0.01" in body
    assert "in the same unit (AI credits for ai_credits)" in body


def test_plan_titles_never_say_plan_plan(admin_client, accounts):
    from .usage_helpers import make_plan

    org = accounts.organization("Acme")
    plan = make_plan(org, ai_credits=5000)
    plan.name = "Team plan"
    plan.save()
    assert str(plan) == "Team plan (Acme)"
    for url in (
        "/admin/billing/billingplan/",
        f"/admin/billing/billingplan/{plan.pk}/change/",
        f"/admin/billing/billingplan/{plan.pk}/delete/",
    ):
        body = admin_client.get(url).content.decode().lower()
        assert "plan plan" not in body, url
    assert "Change billing plan" in admin_client.get(f"/admin/billing/billingplan/{plan.pk}/change/").content.decode()


def test_a_project_override_must_name_a_project_of_its_organization(admin_client, accounts):
    from products.billing.models import QuotaOverride

    org, other = accounts.organization("Acme"), accounts.organization("Other")
    stranger = accounts.project(other, "Theirs")
    response = admin_client.post(
        "/admin/billing/quotaoverride/add/",
        {"organization": org.pk, "project": stranger.pk, "resource": "ai_credits", "mode": "always_limit", "reason": "x"},
    )
    assert response.status_code == 200
    assert "The project belongs to another organization." in response.content.decode()
    assert not QuotaOverride.objects.exists()
