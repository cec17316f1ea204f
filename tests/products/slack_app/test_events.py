"""POST /slack/events: verify, decide, record, answer; then the relay starts or refuses. Real PostgreSQL, Redis and Temporal.

Invariant: the webhook's answer depends on the signature, the body, the quota read and
PostgreSQL only: it makes no Slack call and no Temporal call. What it recorded, the
relay (products/slack_app/relay.py, run here one pass at a time with `relay_pending()`)
turns into one workflow or one reply.
"""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from products.billing.quota_limiting import QuotaResource, add_limited_tokens
from temporal.slack_mention.constants import WORKFLOW_TYPE, mention_workflow_id

from products.slack_app.inbox_models import MentionInbox

from .conftest import BOT_TOKEN, TEAM_ID, mention_envelope, post_event, relay_pending, workflow_description

DENIAL = "Your team has used its monthly AI credits. Top up at http://testserver/billing to continue."

pytestmark = pytest.mark.django_db


def limit(integration) -> None:
    add_limited_tokens(QuotaResource.AI_CREDITS, {integration.project.api_token: time.time() + 3600})


# --- Rejections: nothing happens ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: h.pop("HTTP_X_SLACK_SIGNATURE"), id="missing-signature"),
        pytest.param(lambda h: h.pop("HTTP_X_SLACK_REQUEST_TIMESTAMP"), id="missing-timestamp"),
        pytest.param(lambda h: h.update(HTTP_X_SLACK_SIGNATURE="v0=" + "0" * 64), id="bad-signature"),
        pytest.param(lambda h: h.update(HTTP_X_SLACK_REQUEST_TIMESTAMP="not-a-number"), id="garbage-timestamp"),
    ],
)
def test_unsigned_or_badly_signed_request_is_401_and_starts_nothing(client, integration, task_queue, slack_api, tamper):
    from .conftest import sign

    envelope = mention_envelope()
    body = json.dumps(envelope).encode()
    headers = sign(body)
    tamper(headers)
    response = client.post("/slack/events", data=body, content_type="application/json", **headers)
    assert response.status_code == 401
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert slack_api.calls == []


def test_signature_with_another_secret_is_401(client, integration, task_queue, slack_api):
    envelope = mention_envelope()
    response = post_event(client, envelope, secret="someone-elses-secret")
    assert response.status_code == 401
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None


def test_stale_timestamp_is_401_even_with_a_valid_signature(client, integration, task_queue, slack_api):
    """A captured request replayed after Slack's 5-minute window must not start work."""
    envelope = mention_envelope()
    response = post_event(client, envelope, timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 401
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert slack_api.calls == []


def test_timestamp_within_the_window_is_accepted(client, integration):
    response = post_event(client, {"type": "url_verification", "challenge": "abc"}, timestamp=int(time.time()) - 4 * 60)
    assert response.status_code == 200


def test_body_tampered_after_signing_is_401(client, integration, task_queue):
    from .conftest import sign

    envelope = mention_envelope()
    headers = sign(json.dumps(envelope).encode())
    envelope["event"]["text"] = "<@UBOT> delete everything"
    response = client.post("/slack/events", data=json.dumps(envelope).encode(), content_type="application/json", **headers)
    assert response.status_code == 401


def test_no_signing_secret_configured_refuses_everything(client, settings):
    settings.SLACK_SIGNING_SECRET = ""
    response = post_event(client, {"type": "url_verification", "challenge": "abc"}, secret="")
    assert response.status_code == 401


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"challenge": "x"}', b'{"type": 3}'], ids=["not-json", "array", "no-type", "type-not-string"])
def test_body_that_is_not_a_json_object_with_type_is_400(client, raw):
    response = post_event(client, None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_request"


def test_event_callback_without_event_is_400(client):
    response = post_event(client, {"type": "event_callback", "team_id": TEAM_ID, "event_id": "Ev1"})
    assert response.status_code == 400


def test_body_over_one_mebibyte_is_413(client, integration, slack_api):
    envelope = mention_envelope(text="x" * (1024 * 1024))
    response = post_event(client, envelope)
    assert response.status_code == 413
    assert slack_api.calls == []


def test_other_methods_are_405(client):
    assert client.get("/slack/events").status_code == 405
    assert client.put("/slack/events", data=b"{}", content_type="application/json").status_code == 405


# --- url_verification --------------------------------------------------------------------------


def test_url_verification_answers_the_challenge(client):
    response = post_event(client, {"type": "url_verification", "token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


# --- Mentions we ignore --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"edited": {"user": "U111", "ts": "1700000002.000000"}}, id="edited"),
        pytest.param({"subtype": "message_changed"}, id="message_changed"),
        pytest.param({"bot_id": "B123"}, id="bot"),
        pytest.param({"subtype": "bot_message", "bot_id": "B123"}, id="bot_message"),
        pytest.param({"app_id": "A999"}, id="app"),
    ],
)
def test_edits_and_bot_or_app_authors_are_ignored(client, integration, task_queue, slack_api, extra):
    envelope = mention_envelope(**extra)
    response = post_event(client, envelope)
    assert response.status_code == 200
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert slack_api.calls == []


def test_message_event_carrying_the_mention_is_never_acted_on(client, integration, task_queue, slack_api):
    """A thread mention arrives as app_mention AND as message (different event ids): act once, on app_mention."""
    mention = mention_envelope(thread_ts="1700000000.000001")
    as_message = mention_envelope(thread_ts="1700000000.000001")
    as_message["event"]["type"] = "message"
    as_message["event"]["channel_type"] = "channel"

    assert post_event(client, as_message).status_code == 200
    assert workflow_description(mention_workflow_id(TEAM_ID, as_message["event_id"])) is None
    assert not MentionInbox.objects.exists()

    assert post_event(client, mention).status_code == 200
    task_queue.append(mention_workflow_id(TEAM_ID, mention["event_id"]))
    assert relay_pending().started == 1
    assert workflow_description(mention_workflow_id(TEAM_ID, mention["event_id"])) is not None


def test_unknown_workspace_is_200_with_no_work(client, integration, task_queue, slack_api, caplog):
    envelope = mention_envelope(team_id="TUNKNOWN")
    response = post_event(client, envelope)
    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_workspace"
    assert workflow_description(mention_workflow_id("TUNKNOWN", envelope["event_id"])) is None
    assert slack_api.calls == [] and not MentionInbox.objects.exists()
    assert "unknown workspace TUNKNOWN" in caplog.text


# --- Over quota: denial in the thread, no workflow -------------------------------------------------


@pytest.mark.parametrize("thread_ts", [None, "1699999999.000500"], ids=["top-level", "in-thread"])
def test_over_quota_mention_gets_the_denial_in_its_thread_and_no_workflow(client, integration, task_queue, slack_api, thread_ts):
    limit(integration)
    envelope = mention_envelope(thread_ts=thread_ts, ts="1700000001.000100")
    response = post_event(client, envelope)
    assert response.status_code == 200 and response.json()["outcome"] == "denied_over_quota"
    assert slack_api.calls == []  # recorded; the relay posts it, outside the request
    assert relay_pending().posted == 1
    [post] = slack_api.calls_to("chat.postMessage")
    assert post.args["text"] == DENIAL
    assert post.args["channel"] == "C123"
    assert post.args["thread_ts"] == (thread_ts or "1700000001.000100")
    assert post.token == BOT_TOKEN
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None


def test_over_quota_denial_falls_back_to_ephemeral_when_posting_fails(client, integration, task_queue, slack_api):
    limit(integration)
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "not_in_channel"})
    envelope = mention_envelope(user="U222")
    response = post_event(client, envelope)
    assert response.status_code == 200
    relay_pending()
    [ephemeral] = slack_api.calls_to("chat.postEphemeral")
    assert ephemeral.args["text"] == DENIAL
    assert ephemeral.args["user"] == "U222"
    assert ephemeral.args["channel"] == "C123"
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None


def test_over_quota_redelivery_does_not_post_the_denial_twice(client, integration, task_queue, slack_api):
    limit(integration)
    envelope = mention_envelope()
    assert post_event(client, envelope).status_code == 200
    relay_pending()
    again = post_event(client, envelope, headers={"HTTP_X_SLACK_RETRY_NUM": "1", "HTTP_X_SLACK_RETRY_REASON": "http_timeout"})
    assert (again.status_code, again.json()["outcome"]) == (200, "denied_over_quota")
    relay_pending()
    assert len(slack_api.calls_to("chat.postMessage")) == 1
    assert MentionInbox.objects.get().result == "posted"


def test_over_quota_and_slack_down_still_answers_200_without_work(client, integration, task_queue, slack_api):
    limit(integration)
    slack_api.respond("chat.postMessage", status=500, body="oops", times=None)
    slack_api.respond("chat.postEphemeral", status=500, body="oops", times=None)
    envelope = mention_envelope()
    assert post_event(client, envelope).status_code == 200
    assert relay_pending().retried == 1  # Slack 5xx: the relay tries the denial again later
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    row = MentionInbox.objects.get()
    assert (row.state, row.attempts) == ("pending", 1) and row.last_error


# --- In quota: the workflow starts ----------------------------------------------------------------


def test_in_quota_mention_starts_the_workflow_with_the_contract_id_and_type(client, integration, task_queue, slack_api, settings):
    envelope = mention_envelope(event_id="Ev0STARTED1")
    response = post_event(client, envelope)
    workflow_id = f"posthog-code-mention-{TEAM_ID}:Ev0STARTED1"
    task_queue.append(workflow_id)
    assert response.status_code == 200
    assert response.json()["outcome"] == "started"
    assert workflow_description(workflow_id) is None  # recorded, not started inside the request
    assert relay_pending().started == 1
    description = workflow_description(workflow_id)
    assert description is not None
    assert description.workflow_type == WORKFLOW_TYPE == "posthog-code-slack-mention-processing"
    assert description.task_queue == settings.TEMPORAL_TASK_QUEUE
    assert description.status.name == "RUNNING"
    # Neither the webhook nor the relay posts anything: replies are the workflow's job.
    assert slack_api.calls == []
    assert MentionInbox.objects.get().result == "started"


def test_workflow_input_carries_the_event_integration_team_and_event_id(client, integration, task_queue):
    from temporal.client import get_client, run_sync

    envelope = mention_envelope(event_id="Ev0INPUT1", text="<@UBOT> fix acme/api")
    post_event(client, envelope)
    workflow_id = mention_workflow_id(TEAM_ID, "Ev0INPUT1")
    task_queue.append(workflow_id)
    relay_pending()

    async def decoded_input():
        client_ = await get_client()
        history = await client_.get_workflow_handle(workflow_id).fetch_history()
        payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
        return json.loads(payloads[0].data)

    inp = run_sync(decoded_input())
    assert inp["integration_id"] == integration.pk
    assert inp["slack_team_id"] == TEAM_ID
    assert inp["event_id"] == "Ev0INPUT1"
    assert inp["event"]["text"] == "<@UBOT> fix acme/api"


def test_redelivery_is_processed_and_is_a_duplicate_not_a_second_workflow(client, integration, task_queue):
    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    first = post_event(client, envelope)
    relay_pending()
    run_id = workflow_description(workflow_id).run_id
    again = post_event(client, envelope, headers={"HTTP_X_SLACK_RETRY_NUM": "1", "HTTP_X_SLACK_RETRY_REASON": "http_timeout"})
    assert first.json()["outcome"] == "started"
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert relay_pending().claimed == 0  # the redelivery wrote nothing
    assert MentionInbox.objects.count() == 1
    assert workflow_description(workflow_id).run_id == run_id


def test_mention_accepted_while_temporal_is_down_is_started_once_it_is_back(client, integration, task_queue, settings, temporal):
    """Nothing is lost and Slack is not asked to retry: the mention waits in the inbox until Temporal answers."""
    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    response = post_event(client, envelope)
    assert (response.status_code, response.json()["outcome"]) == (200, "started")
    passed = relay_pending()
    assert passed.temporal_down and passed.started == 0
    row = MentionInbox.objects.get()
    assert (row.state, row.attempts, row.claimed_until) == ("pending", 0, None)  # given back untouched
    settings.TEMPORAL_ADDRESS = temporal.address
    assert workflow_description(workflow_id) is None
    assert relay_pending().started == 1
    assert workflow_description(workflow_id).status.name == "RUNNING"


@pytest.mark.django_db(transaction=True)
def test_same_event_delivered_five_times_concurrently_and_again_later_makes_one_workflow(integration, task_queue):
    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    outcomes: list[tuple[int, str]] = []
    barrier = threading.Barrier(5)

    def deliver(n: int) -> None:
        barrier.wait()
        try:
            response = post_event(Client(), envelope, headers={"HTTP_X_SLACK_RETRY_NUM": str(n)} if n else {})
            outcomes.append((response.status_code, response.json()["outcome"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == [(200, "duplicate")] * 4 + [(200, "started")]
    assert MentionInbox.objects.count() == 1
    assert relay_pending().started == 1
    run_id = workflow_description(workflow_id).run_id

    later = post_event(Client(), envelope, headers={"HTTP_X_SLACK_RETRY_NUM": "3"})
    assert (later.status_code, later.json()["outcome"]) == (200, "duplicate")
    assert relay_pending().claimed == 0
    assert workflow_description(workflow_id).run_id == run_id


def test_redelivery_after_the_workflow_closed_does_not_run_it_again(client, integration, task_queue):
    from temporal.client import get_client, run_sync

    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    post_event(client, envelope)
    relay_pending()

    async def terminate():
        await (await get_client()).get_workflow_handle(workflow_id).terminate("done")

    run_sync(terminate())
    closed_run = workflow_description(workflow_id).run_id
    again = post_event(client, envelope, headers={"HTTP_X_SLACK_RETRY_NUM": "2"})
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    relay_pending()
    description = workflow_description(workflow_id)
    assert description.run_id == closed_run and description.status.name == "TERMINATED"


# --- Infrastructure down --------------------------------------------------------------------------


def test_temporal_unreachable_does_not_decide_the_answer(client, integration, settings, slack_api):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    response = post_event(client, mention_envelope())
    assert (response.status_code, response.json()["outcome"]) == (200, "started")
    assert MentionInbox.objects.get().state == "pending"
    assert slack_api.calls == []


def test_redis_down_with_failure_mode_open_starts_the_workflow(client, integration, task_queue, settings, slack_api, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.QUOTA_CHECK_FAILURE_MODE = "open"
    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    response = post_event(client, envelope)
    assert response.status_code == 200 and response.json()["outcome"] == "started"
    relay_pending()
    assert workflow_description(workflow_id).status.name == "RUNNING"
    assert any(r.levelname == "ERROR" and "quota state unavailable" in r.getMessage() for r in caplog.records)
    assert slack_api.calls == []


def test_redis_down_with_failure_mode_closed_refuses_with_try_again_shortly(client, integration, task_queue, settings, slack_api):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.QUOTA_CHECK_FAILURE_MODE = "closed"
    envelope = mention_envelope(thread_ts="1699999999.000001")
    response = post_event(client, envelope)
    assert response.status_code == 200 and response.json()["outcome"] == "refused_quota_unknown"
    assert slack_api.calls == []
    relay_pending()
    [post] = slack_api.calls_to("chat.postMessage")
    assert "try again shortly" in post.args["text"]
    assert post.args["thread_ts"] == "1699999999.000001"
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None


# --- Slack's 3 seconds, with Redis or Temporal gone ----------------------------------------------


@contextlib.contextmanager
def blackholed_port():
    """A loopback port that accepts TCP connections and never answers a byte (a hung Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def timed_post(client, envelope, **kwargs):
    started = time.monotonic()
    response = post_event(client, envelope, **kwargs)
    return response, time.monotonic() - started


def test_blackholed_redis_fails_open_well_within_slacks_three_seconds(client, integration, task_queue, settings, slack_api):
    settings.QUOTA_CHECK_FAILURE_MODE = "open"
    envelope = mention_envelope()
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    with blackholed_port() as port:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        response, elapsed = timed_post(client, envelope)
    assert response.status_code == 200 and response.json()["outcome"] == "started"
    assert elapsed < 1.5, elapsed
    relay_pending()
    assert workflow_description(workflow_id).status.name == "RUNNING"


def test_blackholed_redis_fails_closed_well_within_slacks_three_seconds(client, integration, task_queue, settings, slack_api):
    settings.QUOTA_CHECK_FAILURE_MODE = "closed"
    envelope = mention_envelope()
    with blackholed_port() as port:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        response, elapsed = timed_post(client, envelope)
    assert response.status_code == 200 and response.json()["outcome"] == "refused_quota_unknown"
    relay_pending()
    [post] = slack_api.calls_to("chat.postMessage")
    assert "try again shortly" in post.args["text"]
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
    assert elapsed < 1.5, elapsed


def test_stopped_temporal_is_acknowledged_well_within_slacks_three_seconds(client, integration, settings, slack_api):
    from tests.conftest import free_port

    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens: Temporal is down
    response, elapsed = timed_post(client, mention_envelope())
    assert response.status_code == 200 and response.json()["outcome"] == "started"
    assert slack_api.calls == []
    assert elapsed < 1.5, elapsed


def test_redis_down_in_closed_mode_says_try_again_once_per_event_however_often_slack_delivers(
    client, integration, task_queue, settings, slack_api
):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.QUOTA_CHECK_FAILURE_MODE = "closed"
    envelope = mention_envelope()
    for retry in range(4):
        headers = {"HTTP_X_SLACK_RETRY_NUM": str(retry), "HTTP_X_SLACK_RETRY_REASON": "http_timeout"} if retry else {}
        response = post_event(client, envelope, headers=headers)
        assert response.status_code == 200 and response.json()["outcome"] == "refused_quota_unknown"
        relay_pending()
    [post] = slack_api.calls_to("chat.postMessage")
    assert "try again shortly" in post.args["text"]
    # Another mention is another event: it gets its own reply.
    assert post_event(client, mention_envelope()).status_code == 200
    relay_pending()
    assert len(slack_api.calls_to("chat.postMessage")) == 2


class TcpRelay:
    """A loopback relay to another address that can be stopped: Temporal "going away" under a connected client."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Stop answering: connections are cut and new ones refused (the port is closed)."""
        self.stopped = True
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone would not
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_temporal_stopping_under_a_connected_relay_keeps_the_mention_until_temporal_answers(
    client, integration, task_queue, settings, temporal, slack_api
):
    proxy = TcpRelay(temporal.address)
    settings.TEMPORAL_ADDRESS = proxy.address
    first, second = mention_envelope(), mention_envelope()
    task_queue.extend(mention_workflow_id(TEAM_ID, e["event_id"]) for e in (first, second))
    assert post_event(client, first).json()["outcome"] == "started"
    assert relay_pending().started == 1  # the relay's client is connected through the proxy
    proxy.stop()
    response, elapsed = timed_post(client, second)
    assert (response.status_code, response.json()["outcome"]) == (200, "started")
    assert elapsed < 1.5, elapsed
    started = time.monotonic()
    assert relay_pending().temporal_down
    assert time.monotonic() - started < 3  # a dead connection costs the relay one start deadline, not a hang
    settings.TEMPORAL_ADDRESS = temporal.address
    assert relay_pending().started == 1
    assert workflow_description(mention_workflow_id(TEAM_ID, second["event_id"])).status.name == "RUNNING"


def test_temporal_that_accepts_but_never_answers_does_not_slow_the_answer(client, integration, settings, slack_api):
    with blackholed_port() as port:
        settings.TEMPORAL_ADDRESS = f"127.0.0.1:{port}"
        response, elapsed = timed_post(client, mention_envelope())
        assert response.status_code == 200
        assert elapsed < 1.5, elapsed
        assert relay_pending().temporal_down
    assert MentionInbox.objects.get().state == "pending"
