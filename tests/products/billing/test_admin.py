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

pytestmark = pytest.mark.django_db

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
