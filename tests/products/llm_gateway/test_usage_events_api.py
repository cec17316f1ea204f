"""POST /api/projects/{id}/usage_events/: validation, idempotency, all-or-nothing, billing, access."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from products.billing.models import UsageEvent

pytestmark = pytest.mark.django_db


def url(project_id) -> str:
    return f"/api/projects/{project_id}/usage_events/"


def event(product="slack_app", cost=0.0123, ts=None, **props):
    return {
        "uuid": str(uuid.uuid4()),
        "event": "$ai_generation",
        "timestamp": (ts or timezone.now()).isoformat(),
        "properties": {
            "$ai_product": product,
            "$ai_model": "claude-sonnet-4-5",
            "$ai_provider": "anthropic",
            "$ai_input_tokens": 1000,
            "$ai_output_tokens": 200,
            "$ai_total_cost_usd": cost,
            "$ai_is_error": False,
            **props,
        },
    }


@pytest.fixture
def caller(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    user = accounts.user(org)
    _, value = accounts.key(user, scopes=["llm_gateway:write"])
    return project, value


def post(project_id, body, value):
    return APIClient().post(url(project_id), body, format="json", HTTP_AUTHORIZATION=f"Bearer {value}")


def test_one_event_is_recorded_with_its_credits(caller):
    project, value = caller
    e = event(cost=0.0123)
    response = post(project.id, e, value)
    assert response.status_code == 200, response.content
    assert response.json() == {"received": 1, "stored": 1, "duplicates": 0}
    row = UsageEvent.objects.get(project=project)
    assert str(row.uuid) == e["uuid"]
    assert row.organization_id == project.organization_id
    assert row.product == "slack_app" and row.billable is True
    assert row.cost_usd == Decimal("0.012300000")
    assert row.credits == 1  # round(0.0123 * 100) = round(1.23)
    assert (row.input_tokens, row.output_tokens, row.model, row.provider) == (1000, 200, "claude-sonnet-4-5", "anthropic")


@pytest.mark.parametrize("cost, markup, credits", [(1.5, "0", 150), (0.125, "0", 13), (1.0, "0.2", 120), (0.004, "0", 0)])
def test_credits_are_cost_in_cents_times_markup(caller, settings, cost, markup, credits):
    settings.AI_CREDITS_MARKUP = markup
    project, value = caller
    assert post(project.id, event(cost=cost), value).status_code == 200
    assert UsageEvent.objects.get(project=project).credits == credits


def test_a_batch_as_object_or_array_is_recorded(caller):
    project, value = caller
    assert post(project.id, {"batch": [event(), event()]}, value).json()["stored"] == 2
    assert post(project.id, [event(), event(), event()], value).json()["stored"] == 3
    assert UsageEvent.objects.filter(project=project).count() == 5


def test_resent_events_are_accepted_and_counted_once(caller):
    project, value = caller
    batch = [event(cost=1), event(cost=2)]
    assert post(project.id, {"batch": batch}, value).json() == {"received": 2, "stored": 2, "duplicates": 0}
    again = post(project.id, {"batch": batch + [event(cost=3)]}, value)
    assert again.status_code == 200
    assert again.json() == {"received": 3, "stored": 1, "duplicates": 2}
    # The same uuid twice within one batch is one event too.
    dup = event(cost=4)
    assert post(project.id, [dup, dup], value).json() == {"received": 1, "stored": 1, "duplicates": 0}
    assert sorted(UsageEvent.objects.filter(project=project).values_list("credits", flat=True)) == [100, 200, 300, 400]


def test_the_same_uuid_in_another_project_is_another_event(caller, accounts):
    project, value = caller
    other = accounts.project(project.organization)
    e = event()
    assert post(project.id, e, value).json()["stored"] == 1
    assert post(other.id, e, value).json()["stored"] == 1


def test_the_client_cannot_mark_billable_usage_free(caller):
    project, value = caller
    post(project.id, [event("slack-twig", **{"$ai_billable": False}), event("array", **{"$ai_billable": True})], value)
    rows = {r.product: r for r in UsageEvent.objects.filter(project=project)}
    assert rows["slack_app_routing"].billable is True
    assert rows["slack_app_routing"].properties["$ai_billable"] is True
    assert rows["slack_app_routing"].properties["$ai_product_requested"] == "slack-twig"
    assert rows["posthog_code"].billable is False
    assert rows["posthog_code"].properties["$ai_billable"] is False


def test_one_invalid_event_rejects_the_whole_batch_with_every_error(caller):
    project, value = caller
    good = event()
    too_old = event(ts=timezone.now() - timedelta(days=36))
    future = event(ts=timezone.now() + timedelta(minutes=6))
    unknown = event(product="mystery")
    negative = event(cost=-1)
    response = post(project.id, {"batch": [good, too_old, future, unknown, negative]}, value)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_usage_events"
    assert "nothing was recorded" in body["detail"]
    by_index = {e["index"]: e for e in body["errors"]}
    assert set(by_index) == {1, 2, 3, 4}
    assert by_index[1]["uuid"] == too_old["uuid"]
    assert by_index[1]["errors"] == {"timestamp": ["More than 35 days old."]}
    assert by_index[2]["errors"] == {"timestamp": ["More than 5 minutes in the future."]}
    assert "Unknown product 'mystery'" in by_index[3]["errors"]["properties.$ai_product"][0]
    assert "properties.$ai_total_cost_usd" in by_index[4]["errors"]
    assert not UsageEvent.objects.exists()


def test_timestamps_just_inside_the_window_are_accepted(caller):
    project, value = caller
    now = timezone.now()
    batch = [event(ts=now - timedelta(days=34, hours=23)), event(ts=now + timedelta(minutes=4))]
    assert post(project.id, batch, value).status_code == 200


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e.update(uuid="not-a-uuid"), "uuid"),
        (lambda e: e.pop("uuid"), "uuid"),
        (lambda e: e.update(event="$pageview"), "event"),
        (lambda e: e.update(timestamp="yesterday"), "timestamp"),
        (lambda e: e.update(timestamp="2026-13-45T00:00:00Z"), "timestamp"),
        (lambda e: e.update(properties=[]), "properties"),
        (lambda e: e["properties"].pop("$ai_product"), "properties.$ai_product"),
        (lambda e: e["properties"].pop("$ai_total_cost_usd"), "properties.$ai_total_cost_usd"),
        (lambda e: e["properties"].update({"$ai_total_cost_usd": "NaN"}), "properties.$ai_total_cost_usd"),
        (lambda e: e["properties"].update({"$ai_total_cost_usd": True}), "properties.$ai_total_cost_usd"),
        (lambda e: e["properties"].update({"$ai_input_tokens": -5}), "properties.$ai_input_tokens"),
        (lambda e: e["properties"].update({"$ai_output_tokens": 1.5}), "properties.$ai_output_tokens"),
        (lambda e: e["properties"].update({"$ai_is_error": "no"}), "properties.$ai_is_error"),
        (lambda e: e["properties"].update({"$ai_model": "a\x00b"}), "properties"),
    ],
)
def test_each_kind_of_invalid_event_is_a_400_naming_the_field(caller, mutate, field):
    project, value = caller
    e = event()
    mutate(e)
    response = post(project.id, e, value)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"][0]["errors"]
    assert not UsageEvent.objects.exists()


def test_batches_are_capped_at_1000_and_must_not_be_empty(caller):
    project, value = caller
    assert post(project.id, [event() for _ in range(1000)], value).json()["stored"] == 1000
    too_many = post(project.id, [event() for _ in range(1001)], value)
    assert too_many.status_code == 400
    assert "at most 1000" in too_many.json()["detail"]
    assert post(project.id, [], value).status_code == 400
    assert post(project.id, "just a string", value).status_code == 400
    assert UsageEvent.objects.count() == 1000


@pytest.mark.parametrize("scopes", [["llm_gateway:write"], ["*"]])
def test_write_scope_or_star_may_record(accounts, scopes):
    org = accounts.organization()
    project = accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=scopes)
    assert post(project.id, event(), value).status_code == 200


@pytest.mark.parametrize("scopes", [["llm_gateway:read"], ["project:write"], ["usage:write"]])
def test_other_scopes_are_403_and_store_nothing(accounts, scopes):
    org = accounts.organization()
    project = accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=scopes)
    response = post(project.id, event(), value)
    assert response.status_code == 403
    assert "llm_gateway:write" in response.json()["detail"]
    assert not UsageEvent.objects.exists()


def test_no_credentials_is_401_and_someone_elses_project_is_404(caller, accounts):
    project, value = caller
    assert APIClient().post(url(project.id), event(), format="json").status_code == 401
    assert post(project.id, event(), "phx_not_a_key").status_code == 401
    stranger_project = accounts.project(accounts.organization())
    assert post(stranger_project.id, event(), value).status_code == 404
    assert post(999_999, event(), value).status_code == 404
    assert not UsageEvent.objects.exists()


def test_a_key_scoped_to_another_project_gets_404(accounts):
    org = accounts.organization()
    project, other = accounts.project(org), accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=["*"], projects=[other])
    assert post(project.id, event(), value).status_code == 404
    assert post(other.id, event(), value).status_code == 200


def test_the_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/projects/{project_id}/usage_events/" in schema
    assert "project_usage_events_create" in schema


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_sent_concurrently_is_stored_once(accounts):
    import threading

    from django.db import connection as thread_connection

    org = accounts.organization()
    project = accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=["llm_gateway:write"])
    batch = [event(cost=1) for _ in range(50)]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def send():
        try:
            barrier.wait()
            statuses.append(post(project.id, {"batch": batch}, value).status_code)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200, 200, 200]
    assert UsageEvent.objects.filter(project=project).count() == 50
