"""Helpers for the Slack webhook tests: requests signed the way Slack signs them, an integration, workflow probes."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from temporalio.service import RPCError, RPCStatusCode

from products.slack_app.models import Integration
from temporal.client import get_client, run_sync

BOT_TOKEN = "xoxb-test-bot-token-1234567890"
TEAM_ID = "T0TEST"


def sign(body: bytes, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
    """Headers Slack would send: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    secret = settings.SLACK_SIGNING_SECRET if secret is None else secret
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"HTTP_X_SLACK_SIGNATURE": f"v0={digest}", "HTTP_X_SLACK_REQUEST_TIMESTAMP": ts}


def post_event(client, envelope: Any, *, raw: bytes | None = None, headers: dict[str, str] | None = None, **sign_kwargs):
    body = raw if raw is not None else json.dumps(envelope).encode()
    extra = sign(body, **sign_kwargs)
    extra.update(headers or {})
    return client.post("/slack/events", data=body, content_type="application/json", **extra)


def post_interaction(client, payload: dict[str, Any], **sign_kwargs):
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return client.post(
        "/slack/interactivity", data=body, content_type="application/x-www-form-urlencoded", **sign(body, **sign_kwargs)
    )


def mention_envelope(
    *, event_id: str | None = None, team_id: str = TEAM_ID, text: str = "<@UBOT> fix the flaky login test",
    channel: str = "C123", ts: str = "1700000001.000100", thread_ts: str | None = None, user: str = "U111", **event_extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(event_extra)
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A123",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:12].upper()}",
        "event_time": int(time.time()),
    }


def workflow_description(workflow_id: str):
    """Describe the workflow, or None if Temporal has never heard of it."""

    async def describe():
        client = await get_client()
        try:
            return await client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    return run_sync(describe())


@pytest.fixture
def integration(accounts, slack_api) -> Integration:
    project = accounts.project()
    integration = Integration(project=project, integration_id=TEAM_ID, config={"repositories": ["acme/web", "acme/api"]})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    return integration


@pytest.fixture
def task_queue(temporal, settings):
    """A task queue of this test's own (no worker polls it: started workflows wait there) and cleanup."""
    settings.TEMPORAL_TASK_QUEUE = f"test-webhook-{uuid.uuid4()}"
    started: list[str] = []
    yield started
    for workflow_id in started:

        async def terminate(wid: str = workflow_id) -> None:
            client = temporal.client  # the session server's own client: tests may have pointed settings elsewhere
            try:
                await client.get_workflow_handle(wid).terminate("test over")
            except RPCError:
                pass

        run_sync(terminate())


# --- The mention inbox's relay (products/slack_app/relay.py) ------------------------------------


def relay_pending():
    """One pass of the real relay, as the worker process runs it: start the recorded mentions'
    workflows and post the recorded refusals. Returns its `PassResult`."""
    from products.slack_app.relay import MentionRelay

    relay = MentionRelay(name="test")
    try:
        return relay.relay_once()
    finally:
        relay.close()


@pytest.fixture
def relay(settings):
    """The real relay loop on a thread of its own (as `run_temporal_worker` runs it) for this test.

    Its database connection is its own, so the test must commit what it records
    (`django_db(transaction=True)`).
    """
    import threading

    from products.slack_app.relay import run_relay

    settings.SLACK_INBOX_RELAY_POLL_SECONDS = 0.5
    stop = threading.Event()
    thread = threading.Thread(target=run_relay, args=(stop,), kwargs={"name": "test-relay"}, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the relay did not stop"
