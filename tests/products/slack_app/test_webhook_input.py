"""What a signed-or-not outsider can send to /slack/events and /slack/interactivity: never a 500, never half done.

Invariant: a request that does not verify is a 401, and a verified one whose body or
fields do not fit what Slack sends is a 400 with a reason; in both cases nothing is
started, written or posted.
"""
from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from products.slack_app.models import SlackThreadTaskMapping
from products.tasks.models import Task
from temporal.slack_mention.constants import mention_workflow_id

from .conftest import TEAM_ID, mention_envelope, post_event, sign, workflow_description

pytestmark = pytest.mark.django_db

ENDPOINTS = ["/slack/events", "/slack/interactivity"]


def form(payload_text: str) -> bytes:
    return urlencode({"payload": payload_text}).encode()


def post_raw(client, path: str, body: bytes, headers: dict[str, str]):
    content_type = "application/json" if path == "/slack/events" else "application/x-www-form-urlencoded"
    return client.post(path, data=body, content_type=content_type, **headers)


# --- 1. Signature verification never fails open, never 500s ------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "timestamp",
    ["9" * 400, "1" * 13, "-1", "1e9", " 1700000000", "１７００００００００"],
    ids=["400-digits", "13-digits", "negative", "float", "space", "fullwidth-digits"],
)
def test_any_timestamp_that_cannot_be_verified_is_401(client, integration, task_queue, slack_api, path, timestamp):
    envelope = mention_envelope()
    body = json.dumps(envelope).encode() if path == "/slack/events" else form(json.dumps({"type": "block_actions"}))
    headers = sign(body)
    headers["HTTP_X_SLACK_REQUEST_TIMESTAMP"] = timestamp
    response = post_raw(client, path, body, headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert slack_api.calls == []


def test_secrets_are_hidden_from_error_reports(integration, settings):
    """The Slack token machinery is marked sensitive: an error inside it never shows key material in a report."""
    import sys

    from django.views.debug import ExceptionReporter

    settings.SLACK_TOKEN_ENCRYPTION_KEY = "not-a-fernet-key-" + "KEYMATERIAL" * 2  # the joined value is in no source line
    settings.DEBUG = False
    try:
        integration.bot_token
    except Exception:
        exc_type, exc, tb = sys.exc_info()
    else:
        pytest.fail("an invalid key must not decrypt")
    html = ExceptionReporter(None, exc_type, exc, tb).get_traceback_html()
    assert "KEYMATERIAL" * 2 not in html
    assert "********" in html  # Django's cleansed substitute, where the key was


# --- 2. Bodies the rest of the stack cannot hold --------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [600, 100_000])
def test_deeply_nested_event_body_is_400(client, integration, task_queue, slack_api, depth):
    envelope = mention_envelope()
    raw = json.dumps(envelope)[:-1] + f', "properties": {nested(depth)}}}'
    response = post_event(client, None, raw=raw.encode())
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert slack_api.calls == []


@pytest.mark.parametrize("depth", [600, 100_000])
def test_deeply_nested_interactivity_payload_is_400(client, integration, slack_api, depth):
    body = form('{"type": "block_actions", "x": ' + nested(depth) + "}")
    response = client.post("/slack/interactivity", data=body, content_type="application/x-www-form-urlencoded", **sign(body))
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]
    assert slack_api.calls == []


def test_lone_surrogate_in_a_mention_is_400_and_starts_nothing(client, integration, task_queue, slack_api):
    envelope = mention_envelope()
    raw = json.dumps(envelope).replace("fix the flaky login test", "fix \\ud800 this")
    assert "\\ud800" in raw
    response = post_event(client, None, raw=raw.encode())
    assert response.status_code == 400
    assert "surrogate" in response.json()["detail"]
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert slack_api.calls == []


def test_lone_surrogate_in_a_picker_value_is_400(client, integration, slack_api):
    payload = '{"type": "block_actions", "team": {"id": "T0TEST"}, "actions": [{"action_id": "repo_selected", "value": "\\ud800"}]}'
    body = form(payload)
    response = client.post("/slack/interactivity", data=body, content_type="application/x-www-form-urlencoded", **sign(body))
    assert response.status_code == 400
    assert slack_api.calls == []


# --- 3. Every Slack field checked for shape and length --------------------------------------------


@pytest.mark.parametrize(
    "where,field,value",
    [
        ("envelope", "event_id", "Ev" + "A" * 1198),  # Temporal refuses workflow ids over 1,000 characters
        ("envelope", "event_id", "Ev" + "B" * 240),  # would make the task's idempotency key longer than 255
        ("envelope", "event_id", "Ev1/../x"),
        ("envelope", "team_id", "T" * 300),
        ("envelope", "team_id", "t0test"),
        ("event", "channel", "C" + "1" * 60),  # longer than the mapping's 50: a task with no thread
        ("event", "channel", "#general"),
        ("event", "user", "U" + "1" * 60),
        ("event", "user", 12345),
        ("event", "ts", "1700000001.000100" + "9" * 60),
        ("event", "ts", "yesterday"),
        ("event", "thread_ts", "1" * 80),
        ("event", "text", "x" * 40_001),
        ("event", "text", ["not", "text"]),
    ],
)
def test_a_slack_field_that_does_not_fit_is_400_and_nothing_is_started_or_written(
    client, integration, task_queue, slack_api, where, field, value
):
    envelope = mention_envelope()
    (envelope if where == "envelope" else envelope["event"])[field] = value
    response = post_event(client, envelope)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "malformed_request"
    event_id = envelope["event_id"] if isinstance(envelope["event_id"], str) else ""
    if len(event_id) < 900 and isinstance(envelope["team_id"], str) and len(envelope["team_id"]) < 100:
        assert workflow_description(mention_workflow_id(envelope["team_id"], event_id)) is None
    assert not Task.objects.exists() and not SlackThreadTaskMapping.objects.exists()
    assert slack_api.calls == []


def test_longest_accepted_ids_fit_every_store(client, integration, task_queue):
    """The longest ids the webhook accepts make a workflow id that fits Temporal and the 255-character columns."""
    envelope = mention_envelope(event_id="Ev" + "A" * 62)
    response = post_event(client, envelope)
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    assert response.status_code == 200 and response.json()["outcome"] == "started"
    assert len(mention_workflow_id("T" * 32, envelope["event_id"])) <= 255


def test_signed_request_replayed_with_the_old_timestamp_is_still_401(client, integration, task_queue):
    envelope = mention_envelope()
    response = post_event(client, envelope, timestamp=int(time.time()) - 3600)
    assert response.status_code == 401
