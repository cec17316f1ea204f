"""POST /api/projects/{id}/usage_events/: validation, idempotency, all-or-nothing, billing, access.

Invariant: a request is recorded whole or not at all, and the response tells the caller
what it will cost (billable events and credits), so nobody learns later that usage never counted.
These tests also run on SQLite (the `make run` database).
"""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from products.billing.models import UsageEvent

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


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
    assert response.json() == {"received": 1, "stored": 1, "duplicates": 0, "billable": 1, "credits": 1}
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
    assert post(project.id, {"batch": batch}, value).json() == {
        "received": 2, "stored": 2, "duplicates": 0, "billable": 2, "credits": 300
    }
    again = post(project.id, {"batch": batch + [event(cost=3)]}, value)
    assert again.status_code == 200
    assert again.json() == {"received": 3, "stored": 1, "duplicates": 2, "billable": 3, "credits": 600}
    # The same uuid twice within one batch (identical copies) is one event, received twice.
    dup = event(cost=4)
    assert post(project.id, [dup, dup], value).json() == {
        "received": 2, "stored": 1, "duplicates": 1, "billable": 1, "credits": 400
    }
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
        (lambda e: e["properties"].update({"$ai_model": 42}), "properties.$ai_model"),
        (lambda e: e["properties"].update({"$ai_model": "m" * 201}), "properties.$ai_model"),
        (lambda e: e["properties"].update({"$ai_input_tokens": "5"}), "properties.$ai_input_tokens"),
        (lambda e: e["properties"].update({"$ai_input_tokens": 2**62}), "properties.$ai_input_tokens"),
        (lambda e: e["properties"].update({"$ai_total_cost_usd": 1_000_000}), "properties.$ai_total_cost_usd"),
        (lambda e: e["properties"].update({"$ai_total_cost_usd": "-0.0000000001"}), "properties.$ai_total_cost_usd"),
        (lambda e: e.update(properties=None), "properties"),
        (lambda e: e.update(timestamp=12345), "timestamp"),
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
    assert post(project.id, {"batch": []}, value).json()["detail"] == "The batch is empty. Nothing was recorded."
    for body in ("just a string", 7, None, {"batch": "x"}):
        response = post(project.id, body, value)
        assert response.status_code == 400, body
        assert response.json()["code"] == "invalid_usage_events"
    not_an_object = post(project.id, [event(), "x"], value).json()
    assert not_an_object["errors"] == [
        {"index": 1, "uuid": None, "errors": {"non_field_errors": ["An event must be a JSON object, not str."]}}
    ]
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


# --- What the response says about billing (issue 7, item 10) -----------------------------------


def test_non_billable_usage_is_stored_and_the_response_says_it_will_never_count(caller):
    project, value = caller
    response = post(project.id, event("posthog_code", cost=0.5), value)
    assert response.status_code == 200
    assert response.json() == {"received": 1, "stored": 1, "duplicates": 0, "billable": 0, "credits": 0}
    assert UsageEvent.objects.get(project=project).billable is False


def test_a_mixed_batch_reports_how_many_events_are_billable_and_their_credits(caller, settings):
    settings.AI_CREDITS_MARKUP = "0.2"
    project, value = caller
    batch = [event("slack_app", cost=1.5), event("twig", cost=2), event("slack-twig", cost=0.25)]
    body = post(project.id, {"batch": batch}, value).json()
    # 1.5 x 100 x 1.2 = 180 and 0.25 x 100 x 1.2 = 30; "twig" is PostHog Code, not billable.
    assert body == {"received": 3, "stored": 3, "duplicates": 0, "billable": 2, "credits": 210}
    assert sum(UsageEvent.objects.filter(project=project, billable=True).values_list("credits", flat=True)) == 210


def test_received_counts_every_event_sent_even_a_repeated_uuid(caller):
    project, value = caller
    first, second, third = event(cost=1), event(cost=1), event(cost=1)
    body = post(project.id, [first, second, third, second], value).json()
    assert body == {"received": 4, "stored": 3, "duplicates": 1, "billable": 3, "credits": 300}
    assert UsageEvent.objects.filter(project=project).count() == 3


def test_the_same_uuid_twice_with_different_contents_is_a_400_naming_it(caller):
    project, value = caller
    original = event(cost=1)
    changed = {**original, "properties": {**original["properties"], "$ai_total_cost_usd": 2}}
    response = post(project.id, {"batch": [original, event(), changed]}, value)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_usage_events"
    assert original["uuid"] in body["detail"] and "different contents" in body["detail"]
    [error] = body["errors"]
    assert (error["index"], error["uuid"]) == (2, original["uuid"])
    assert "already sent at index 0 with different contents" in error["errors"]["uuid"][0]
    assert not UsageEvent.objects.exists()


def test_the_cost_range_is_checked_after_rounding(caller):
    project, value = caller
    too_much = post(project.id, event(cost=999999.9999999999), value)  # rounds to 1,000,000.000000000
    assert too_much.status_code == 400
    assert too_much.json()["errors"][0]["errors"] == {
        "properties.$ai_total_cost_usd": ["Must be at least 0 and below 1000000 once rounded to 9 decimal places."]
    }
    assert not UsageEvent.objects.exists()

    just_under = post(project.id, event(cost="999999.999999999"), value)
    assert just_under.status_code == 200, just_under.content
    assert UsageEvent.objects.get().cost_usd == Decimal("999999.999999999")
    rounded = event(cost=0.0123456789)  # ten places: rounded half up, not refused
    assert post(project.id, rounded, value).status_code == 200
    assert UsageEvent.objects.get(uuid=rounded["uuid"]).cost_usd == Decimal("0.012345679")


# --- Bodies nothing downstream could handle (issue 7, item 2) ------------------------------------


def post_raw(project_id, body: bytes | str, value):
    return APIClient().post(
        url(project_id), data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {value}"
    )


def test_properties_nested_600_levels_deep_are_a_400_and_nothing_is_stored(caller):
    project, value = caller
    e = event()
    deep: dict = {}
    for _ in range(600):
        deep = {"a": deep}
    e["properties"]["nested"] = deep
    response = post_raw(project.id, json.dumps(e), value)
    assert response.status_code == 400
    assert "nested deeper than 64 levels" in response.json()["detail"]
    assert not UsageEvent.objects.exists()


def test_a_body_of_100000_nested_arrays_is_a_400_and_nothing_is_stored(caller):
    project, value = caller
    response = post_raw(project.id, "[" * 100_000 + "]" * 100_000, value)
    assert response.status_code == 400
    assert "nested deeper than 64 levels" in response.json()["detail"]
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize(
    "text, reason",
    [("\ud800", "lone UTF-16 surrogates"), ("before\udfffafter", "lone UTF-16 surrogates"), ("a\x00b", "NUL")],
)
def test_text_no_database_can_store_is_a_400_and_nothing_is_stored(caller, text, reason):
    project, value = caller
    for where in ("$ai_model", "note"):
        e = event()
        e["properties"][where] = text
        response = post_raw(project.id, json.dumps(e), value)  # ensure_ascii: sent as \\ud800 escapes
        assert response.status_code == 400, response.content
        assert reason in response.json()["detail"]
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_number_in_the_properties_is_a_400_and_nothing_is_stored(caller, literal):
    project, value = caller
    e = event()
    e["properties"]["latency"] = "__NUMBER__"
    response = post_raw(project.id, json.dumps(e).replace('"__NUMBER__"', literal), value)
    assert response.status_code == 400, response.content
    # Refused at the door by the strict JSON parser (NaN and Infinity are not JSON numbers).
    body = response.json()
    assert body["code"] == "parse_error"
    assert "not a JSON number" in body["detail"] or "too large" in body["detail"]
    assert not UsageEvent.objects.exists()


# --- The schema documents the body, what is billable, and the response ---------------------------


def test_the_schema_says_which_products_are_billable_and_shows_examples(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]
    product = components["UsageEventPropertiesRequest"]["properties"]["$ai_product"]
    billing = {choice["enum"][0]: choice["description"] for choice in product["oneOf"]}
    assert set(billing) == {"slack_app", "slack_app_routing", "posthog_code", "slack-twig", "slack-posthog-code", "array", "twig"}
    assert billing["slack_app"].startswith("billable: counts against AI credits")
    assert billing["posthog_code"].startswith("not billable: never counts against AI credits")
    assert billing["slack-twig"].startswith("billable: counts against AI credits (retired name of slack_app_routing)")
    assert "* `posthog_code` - not billable" in product["description"]

    recorded = components["UsageEventsRecorded"]["properties"]
    assert set(recorded) == {"received", "stored", "duplicates", "billable", "credits"}
    operation = schema["paths"]["/api/projects/{project_id}/usage_events/"]["post"]
    request_examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"OneEvent", "ABatch"} <= set(request_examples)
    response_example = operation["responses"]["200"]["content"]["application/json"]["examples"]["Recorded"]["value"]
    assert response_example == {"received": 2, "stored": 2, "duplicates": 0, "billable": 1, "credits": 1}
