"""The mention inbox: the webhook records, the relay acts, operators see the backlog.

Invariants:
* however often and however concurrently Slack delivers one event, there is one row and
  one workflow;
* PostgreSQL unreachable is a 503 (Slack delivers again), never a 200 that recorded nothing;
* two relays racing start each recorded mention once;
* the backlog (pending count, age of the oldest) is on the admin changelist and in the
  relay's log; processed rows are pruned after their age, pending ones never.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from products.slack_app.inbox import backlog, prune
from products.slack_app.inbox_models import MentionInbox
from products.slack_app.relay import MentionRelay
from temporal.client import get_client, run_sync
from temporal.slack_mention.constants import mention_workflow_id
from tests.conftest import free_port

from .conftest import TEAM_ID, mention_envelope, post_event, relay_pending, sign, workflow_description

ROOT = Path(__file__).resolve().parents[3]


def count_workflows(task_queue: str) -> int:
    async def count() -> int:
        return (await (await get_client()).count_workflows(f'TaskQueue="{task_queue}"')).count

    return run_sync(count())


def wait_for_count(task_queue: str, expected: int, timeout: float = 20) -> int:
    """Visibility lags a little behind starts: wait until `expected` show (or the timeout), return the count."""
    deadline = time.monotonic() + timeout
    n = count_workflows(task_queue)
    while n < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        n = count_workflows(task_queue)
    return n


# --- Redeliveries: one row ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_deliveries_of_one_event_make_one_row_and_one_workflow(integration, task_queue, settings):
    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    barrier = threading.Barrier(10)
    outcomes: list[tuple[int, str]] = []

    def deliver(n: int) -> None:
        barrier.wait()
        try:
            response = post_event(Client(), envelope, headers={"HTTP_X_SLACK_RETRY_NUM": str(n)} if n else {})
            outcomes.append((response.status_code, response.json()["outcome"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == [(200, "duplicate")] * 9 + [(200, "started")]
    assert MentionInbox.objects.count() == 1
    assert relay_pending().started == 1
    assert relay_pending().claimed == 0
    assert wait_for_count(settings.TEMPORAL_TASK_QUEUE, 1) == 1
    assert workflow_description(workflow_id).status.name == "RUNNING"


# --- PostgreSQL unreachable: 503 -------------------------------------------------------------------


WEBHOOK_WITHOUT_DATABASE = """
import json, os, sys, time
import django
django.setup()
from django.test import Client
body = sys.stdin.buffer.read()
headers = json.loads(os.environ["SIGNED_HEADERS"])
started = time.monotonic()
response = Client().post("/slack/events", data=body, content_type="application/json", **headers)
print(json.dumps({"status": response.status_code, "body": response.json(), "seconds": time.monotonic() - started}))
"""


def test_postgres_unreachable_is_a_503_so_slack_delivers_again(settings, db):
    """The whole web stack in a process whose DATABASE_URL names a port nothing listens on."""
    envelope = mention_envelope()
    body = json.dumps(envelope).encode()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "posthog_app.settings_test",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        "TEST_REDIS_URL": settings.REDIS_URL,
        "SIGNED_HEADERS": json.dumps(sign(body)),
    }
    proc = subprocess.run(
        [sys.executable, "-c", WEBHOOK_WITHOUT_DATABASE], input=body, env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    answer = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert answer["status"] == 503
    assert answer["body"]["error"] == "temporarily_unavailable"
    assert answer["seconds"] < 3
    assert not MentionInbox.objects.exists()


# --- Two relays racing ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_relays_racing_start_each_recorded_mention_once(integration, task_queue, settings):
    settings.SLACK_INBOX_RELAY_BATCH_SIZE = 4  # many small claims: many chances to collide
    envelopes = [mention_envelope(ts=f"1700000{n:03d}.000100") for n in range(30)]
    for envelope in envelopes:
        assert post_event(Client(), envelope).json()["outcome"] == "started"
        task_queue.append(mention_workflow_id(TEAM_ID, envelope["event_id"]))

    barrier = threading.Barrier(2)
    totals: dict[str, list[int]] = {"a": [0, 0], "b": [0, 0]}

    def run(name: str) -> None:
        relay = MentionRelay(name=name)
        barrier.wait()
        try:
            while (result := relay.relay_once()).claimed:
                totals[name][0] += result.started
                totals[name][1] += result.already_started
        finally:
            relay.close()
            connection.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in totals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    started = totals["a"][0] + totals["b"][0]
    already = totals["a"][1] + totals["b"][1]
    assert (started, already) == (30, 0)  # no row was taken by both
    assert totals["a"][0] and totals["b"][0], totals  # both relays did work: it was a race
    assert set(MentionInbox.objects.values_list("state", "result")) == {("done", "started")}
    assert wait_for_count(settings.TEMPORAL_TASK_QUEUE, 30) == 30


# --- Operators: the backlog -----------------------------------------------------------------------


def test_the_admin_changelist_shows_the_pending_count_and_the_age_of_the_oldest(accounts, integration, settings):
    from tests.posthog_app.signin import sign_in

    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # Temporal down: the mentions wait
    client = Client()
    for _ in range(2):
        assert post_event(client, mention_envelope()).json()["outcome"] == "started"
    MentionInbox.objects.update(received_at=timezone.now() - timedelta(seconds=95))
    admin = accounts.user(is_staff=True, is_superuser=True)

    browser = Client(enforce_csrf_checks=True)
    signed_in = sign_in(browser, admin.username, "pw", next_url="/admin/slack_app/mentioninbox/")
    assert signed_in.status_code == 302
    page = browser.get(signed_in["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "<strong>2</strong> pending mentions" in html
    age = float(html.split("the oldest has waited <strong>")[1].split(" s</strong>")[0])
    assert 95 <= age < 200


@pytest.mark.django_db(transaction=True)
def test_the_relay_logs_the_backlog_periodically(integration, settings, caplog, relay):
    caplog.set_level("INFO", logger="products.slack_app.relay")
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # Temporal down: the mention waits
    settings.SLACK_INBOX_BACKLOG_LOG_SECONDS = 0.2
    settings.SLACK_INBOX_RELAY_BACKOFF_MAX_SECONDS = 0.2
    assert post_event(Client(), mention_envelope()).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slack inbox backlog: pending=1 ")]
        if lines:
            break
        time.sleep(0.1)
    assert lines, [r.getMessage() for r in caplog.records]
    assert "oldest_pending_age_s=" in lines[-1] and lines[-1].endswith("failed=0")
    assert backlog().pending == 1


def test_processed_rows_are_pruned_after_their_age_and_pending_ones_never(integration, task_queue, settings):
    old, recent, waiting = (mention_envelope() for _ in range(3))
    for envelope in (old, recent):
        post_event(Client(), envelope)
        task_queue.append(mention_workflow_id(TEAM_ID, envelope["event_id"]))
    assert relay_pending().started == 2
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"
    post_event(Client(), waiting)
    MentionInbox.objects.filter(event_id=old["event_id"]).update(processed_at=timezone.now() - timedelta(days=8))
    MentionInbox.objects.filter(event_id=waiting["event_id"]).update(received_at=timezone.now() - timedelta(days=30))
    settings.SLACK_INBOX_KEEP_PROCESSED_SECONDS = 7 * 86400
    assert prune() == 1
    assert set(MentionInbox.objects.values_list("event_id", flat=True)) == {recent["event_id"], waiting["event_id"]}


# --- Recorded denials: posted once, retried while Slack cannot take them ----------------------------


def limit(integration) -> None:
    from products.billing.quota_limiting import QuotaResource, add_limited_tokens

    add_limited_tokens(QuotaResource.AI_CREDITS, {integration.project.api_token: time.time() + 3600})


def test_a_denial_slack_rate_limits_is_posted_once_after_retry_after(integration, slack_api, settings):
    limit(integration)
    slack_api.respond("chat.postMessage", status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"})
    envelope = mention_envelope()
    assert post_event(Client(), envelope).json()["outcome"] == "denied_over_quota"
    assert relay_pending().retried == 1
    assert relay_pending().claimed == 0  # not before Slack's Retry-After
    time.sleep(1.1)
    assert relay_pending().posted == 1
    posts = [c for c in slack_api.calls_to("chat.postMessage") if "AI credits" in c.args["text"]]
    assert len(posts) == 2  # the refused attempt and the one that went through
    assert relay_pending().claimed == 0
    assert MentionInbox.objects.get().result == "posted"


def test_a_denial_slack_never_takes_fails_for_good_after_the_attempts_and_is_counted(integration, slack_api, settings):
    limit(integration)
    settings.SLACK_INBOX_MAX_ATTEMPTS = 2
    settings.SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS = 0.05
    slack_api.respond("chat.postMessage", status=503, body="down", times=None)
    slack_api.respond("chat.postEphemeral", status=503, body="down", times=None)
    slack_api.respond("conversations.replies", status=503, body="down", times=None)
    assert post_event(Client(), mention_envelope()).status_code == 200
    assert relay_pending().retried == 1
    time.sleep(0.1)
    assert relay_pending().retried == 1
    row = MentionInbox.objects.get()
    assert (row.state, row.attempts, row.result) == ("failed", 2, "failed")
    assert backlog().failed == 1 and backlog().pending == 0
    assert relay_pending().claimed == 0
