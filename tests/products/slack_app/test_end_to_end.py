"""Slack -> webhook -> inbox -> relay -> Temporal -> worker -> Slack, with the real worker (temporal/worker.py) on a
fresh task queue and the real relay (products/slack_app/relay.py) on a thread, as `run_temporal_worker` runs them.

Invariants: however often Slack delivers one mention, there is one workflow, one task
and one "On it"; a picker click reaches the waiting workflow and decides the repository.
"""
from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from django.db import connection
from django.test import Client

from products.slack_app.inbox_models import MentionInbox
from products.slack_app.models import Integration, SlackThreadTaskMapping
from products.tasks.models import Task
from temporal.client import run_sync
from temporal.slack_mention.constants import mention_workflow_id

from .conftest import BOT_TOKEN, mention_envelope, post_event, post_interaction, workflow_description

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(temporal, settings, relay):
    """The service's real worker (all workflows and activities) polling this test's own task queue, and the relay."""
    from temporal.worker import build_worker

    settings.TEMPORAL_TASK_QUEUE = task_queue = f"test-e2e-{uuid.uuid4()}"

    async def start():
        # Built on the shared loop: the workflow sandbox validates with a running loop.
        worker = build_worker(temporal.client, task_queue)
        return worker, asyncio.get_running_loop().create_task(worker.run())

    worker, task = run_sync(start())
    yield worker

    async def stop() -> None:
        await worker.shutdown()
        await task

    run_sync(stop(), timeout=60)


def result_of(temporal, workflow_id: str, timeout: float = 60):
    """The workflow's result, once the relay has started it and it has finished."""
    import time

    deadline = time.monotonic() + 15
    while workflow_description(workflow_id) is None:
        assert time.monotonic() < deadline, f"the relay did not start {workflow_id}"
        time.sleep(0.05)
    return run_sync(temporal.client.get_workflow_handle(workflow_id).result(), timeout=timeout)


def on_it_posts(slack_api):
    return [c for c in slack_api.calls_to("chat.postMessage") if c.args.get("text", "").startswith("On it")]


def routing_calls(fake_upstream):
    """The routing model's calls (temperature 0); the task's run, started once the task exists, asks the agent too."""
    return [c for c in fake_upstream.calls_to("/chat/completions") if c.body.get("temperature") == 0]


def make_integration(accounts, repositories: list[str]) -> Integration:
    integration = Integration(project=accounts.project(), integration_id=f"T{uuid.uuid4().hex[:8].upper()}",
                              config={"repositories": repositories, "default_repository": None, "alerts_channel": None})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    return integration


def test_five_concurrent_deliveries_and_a_late_redelivery_make_one_task_and_one_on_it(accounts, slack_api, temporal, worker):
    integration = make_integration(accounts, ["acme/web"])
    envelope = mention_envelope(team_id=integration.integration_id, text="<@UBOT> fix the flaky login test")
    workflow_id = mention_workflow_id(integration.integration_id, envelope["event_id"])
    outcomes: list[str] = []
    barrier = threading.Barrier(5)

    def deliver(n: int) -> None:
        barrier.wait()
        try:
            response = post_event(Client(), envelope, headers={"HTTP_X_SLACK_RETRY_NUM": str(n)} if n else {})
            assert response.status_code == 200
            outcomes.append(response.json()["outcome"])
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["duplicate"] * 4 + ["started"]

    result_of(temporal, workflow_id)
    assert workflow_description(workflow_id).status.name == "COMPLETED"

    # Slack delivers once more after the work is done: acknowledged, nothing runs again.
    late = post_event(Client(), envelope, headers={"HTTP_X_SLACK_RETRY_NUM": "3", "HTTP_X_SLACK_RETRY_REASON": "http_timeout"})
    assert (late.status_code, late.json()["outcome"]) == (200, "duplicate")
    assert workflow_description(workflow_id).status.name == "COMPLETED"

    [task] = Task.objects.filter(project=integration.project)
    assert task.repository == "acme/web" and task.origin_product == "slack"
    assert task.runs.count() == 1
    [row] = MentionInbox.objects.filter(integration=integration)  # one inbox row, relayed once
    assert (row.state, row.result) == ("done", "started")
    [post] = on_it_posts(slack_api)
    assert f"http://testserver/tasks/{task.pk}/" in post.args["text"]
    assert post.args["thread_ts"] == envelope["event"]["ts"]
    assert len(slack_api.calls_to("reactions.add")) == 1
    mapping = SlackThreadTaskMapping.objects.get(integration=integration)
    assert (mapping.channel, mapping.thread_ts, mapping.task_id) == ("C123", envelope["event"]["ts"], task.pk)


def test_picker_click_through_the_interactivity_endpoint_decides_the_repository(accounts, slack_api, temporal, worker):
    integration = make_integration(accounts, ["acme/web", "acme/api"])
    envelope = mention_envelope(team_id=integration.integration_id, text="<@UBOT> fix the build")
    workflow_id = mention_workflow_id(integration.integration_id, envelope["event_id"])
    assert post_event(Client(), envelope).json()["outcome"] == "started"

    # The workflow asks which repository; click the button Slack would show.
    [picker] = [c for c in slack_api.wait_for("chat.postMessage", timeout=30) if c.args.get("blocks")]
    blocks = picker.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    button = next(e for b in blocks if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "repo_selected" and json.loads(e["value"])["repository"] == "acme/api")
    payload = {
        "type": "block_actions",
        "team": {"id": integration.integration_id},
        "user": {"id": "U111"},
        "container": {"type": "message", "message_ts": "1700000050.000100", "channel_id": "C123"},
        "channel": {"id": "C123"},
        "actions": [{**button, "type": "button"}],
    }
    assert post_interaction(Client(), payload).status_code == 200
    result_of(temporal, workflow_id)

    [task] = Task.objects.filter(project=integration.project)
    assert task.repository == "acme/api"
    [update] = slack_api.calls_to("chat.update")
    assert "acme/api" in update.args["text"]
    assert len(on_it_posts(slack_api)) == 1

    # A second click on the now-answered picker gets a polite note, not a 500 and not a second task.
    assert post_interaction(Client(), payload).status_code == 200
    [note] = slack_api.calls_to("chat.postEphemeral")
    assert "expired" in note.args["text"]
    assert Task.objects.filter(project=integration.project).count() == 1


# --- The repository router through the LLM gateway ---------------------------------------------


def test_an_ambiguous_mention_is_routed_by_the_model_through_the_gateway_and_billed(
    accounts, slack_api, temporal, worker, gateway_server, fake_upstream, settings
):
    """Slack -> webhook -> workflow -> route activity -> gateway -> provider: the model's choice
    becomes the task's repository without a picker, and the routing call is billable usage."""
    from products.billing.models import UsageEvent

    settings.LLM_GATEWAY_URL = gateway_server.base_url
    fake_upstream.respond("/chat/completions", text=json.dumps({"repository": "acme/api", "confidence": 0.9}))
    integration = make_integration(accounts, ["acme/web", "acme/api"])
    envelope = mention_envelope(team_id=integration.integration_id, text="<@UBOT> the orders endpoint returns 500s")
    workflow_id = mention_workflow_id(integration.integration_id, envelope["event_id"])

    assert post_event(Client(), envelope).json()["outcome"] == "started"
    result = result_of(temporal, workflow_id)

    [task] = Task.objects.filter(project=integration.project)
    assert result["repository"] == task.repository == "acme/api"  # an untyped handle's result: a dict
    assert not [c for c in slack_api.calls_to("chat.postMessage") if c.args.get("blocks")]  # no picker
    assert len(on_it_posts(slack_api)) == 1
    [call] = routing_calls(fake_upstream)
    assert call.body["model"] == "gpt-4o-mini" and call.body["temperature"] == 0
    gateway_server.wait_for_usage()
    [usage] = UsageEvent.objects.filter(project=integration.project, product="slack_app_routing")
    assert usage.billable and usage.properties["$ai_trace_id"] == workflow_id  # the usage names its mention


def test_a_failing_routing_model_falls_back_to_the_picker_end_to_end(
    accounts, slack_api, temporal, worker, gateway_server, fake_upstream, settings
):
    """The provider failing behind the gateway never fails the mention: the user is asked instead."""
    settings.LLM_GATEWAY_URL = gateway_server.base_url
    fake_upstream.respond("/chat/completions", status=500)
    integration = make_integration(accounts, ["acme/web", "acme/api"])
    envelope = mention_envelope(team_id=integration.integration_id, text="<@UBOT> the orders endpoint returns 500s")
    workflow_id = mention_workflow_id(integration.integration_id, envelope["event_id"])

    assert post_event(Client(), envelope).json()["outcome"] == "started"
    [picker] = [c for c in slack_api.wait_for("chat.postMessage", timeout=30) if c.args.get("blocks")]
    assert workflow_description(workflow_id).status.name == "RUNNING"  # started by the relay

    async def choose() -> None:
        await temporal.client.get_workflow_handle(workflow_id).signal("repo_selected", "acme/web")

    run_sync(choose())
    result = result_of(temporal, workflow_id)
    assert result["repository"] == "acme/web"
    assert len(routing_calls(fake_upstream)) == 1
