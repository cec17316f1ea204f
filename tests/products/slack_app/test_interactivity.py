"""POST /slack/interactivity: the repository picker's buttons signal the waiting workflow."""
from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from products.slack_app.mentions import post_repo_picker
from products.slack_app.messages import repo_picker_blocks
from temporal.client import get_client, run_sync
from temporal.slack_mention.constants import mention_workflow_id

from .conftest import TEAM_ID, mention_envelope, post_event, post_interaction, sign, relay_pending

pytestmark = pytest.mark.django_db


def click(workflow_id: str, *, repository: str | None = "acme/api", team_id: str = TEAM_ID, user: str = "U111") -> dict:
    """A block_actions payload as Slack sends it for a click on one of our picker buttons."""
    blocks = repo_picker_blocks(workflow_id, ["acme/web", "acme/api"])
    buttons = [b["elements"][0] for b in blocks if b["type"] == "actions"]
    if repository is None:
        button = next(b for b in buttons if b["action_id"] == "no_repo_needed")
    else:
        button = next(b for b in buttons if b["action_id"] == "repo_selected" and json.loads(b["value"])["repository"] == repository)
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "acme"},
        "user": {"id": user, "username": "alice"},
        "api_app_id": "A123",
        "container": {"type": "message", "message_ts": "1700000009.000200", "channel_id": "C123", "is_ephemeral": False},
        "channel": {"id": "C123", "name": "dev"},
        "message": {"ts": "1700000009.000200", "text": "Which repository should I work in?", "blocks": blocks},
        "response_url": "https://hooks.slack.com/actions/T/1/abc",
        "actions": [{**button, "block_id": "repo_picker_1", "type": "button", "action_ts": str(time.time())}],
    }


def signals_received(workflow_id: str) -> list[tuple[str, list]]:
    async def fetch():
        client = await get_client()
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        out = []
        for event in history.events:
            if event.HasField("workflow_execution_signaled_event_attributes"):
                attrs = event.workflow_execution_signaled_event_attributes
                out.append((attrs.signal_name, [json.loads(p.data) for p in attrs.input.payloads]))
        return out

    return run_sync(fetch())


@pytest.fixture
def waiting_workflow(client, integration, task_queue, slack_api) -> str:
    """A mention workflow started by the webhook, waiting on its own task queue, with its picker posted."""
    envelope = mention_envelope()
    assert post_event(client, envelope).json()["outcome"] == "started"
    workflow_id = mention_workflow_id(TEAM_ID, envelope["event_id"])
    task_queue.append(workflow_id)
    assert relay_pending().started == 1  # the worker process's relay starts what the webhook recorded
    # What the workflow's picker step does (no worker polls this queue): record the offer and post it.
    post_repo_picker(integration.pk, workflow_id=workflow_id, channel="C123", thread_ts=envelope["event"]["ts"],
                     repositories=["acme/web", "acme/api"])
    slack_api.reset()
    return workflow_id


def test_repository_click_signals_repo_selected_and_updates_the_picker(client, waiting_workflow, slack_api):
    response = post_interaction(client, click(waiting_workflow, repository="acme/api"))
    assert response.status_code == 200
    assert signals_received(waiting_workflow) == [("repo_selected", ["acme/api"])]
    [update] = slack_api.calls_to("chat.update")
    assert update.args["channel"] == "C123"
    assert update.args["ts"] == "1700000009.000200"
    assert update.args["text"] == "<@U111> picked *acme/api*."
    assert "blocks" in update.args and "button" not in json.dumps(update.args["blocks"])  # buttons gone


def test_no_repository_click_signals_no_repo_needed(client, waiting_workflow, slack_api):
    response = post_interaction(client, click(waiting_workflow, repository=None))
    assert response.status_code == 200
    assert signals_received(waiting_workflow) == [("no_repo_needed", [])]
    [update] = slack_api.calls_to("chat.update")
    assert update.args["text"] == "<@U111> picked no repository."


def test_click_for_an_unknown_workflow_gets_a_polite_note_not_a_500(client, integration, temporal, slack_api):
    response = post_interaction(client, click(mention_workflow_id(TEAM_ID, "EvNEVERSTARTED"), user="U333"))
    assert response.status_code == 200
    [note] = slack_api.calls_to("chat.postEphemeral")
    assert note.args["user"] == "U333"
    assert "expired" in note.args["text"]
    assert slack_api.calls_to("chat.update") == []


def test_click_for_a_closed_workflow_gets_a_polite_note(client, waiting_workflow, slack_api):
    async def terminate():
        await (await get_client()).get_workflow_handle(waiting_workflow).terminate("picker timed out")

    run_sync(terminate())
    response = post_interaction(client, click(waiting_workflow))
    assert response.status_code == 200
    assert len(slack_api.calls_to("chat.postEphemeral")) == 1
    assert slack_api.calls_to("chat.update") == []


def test_click_naming_another_workspaces_workflow_signals_nothing(client, integration, waiting_workflow, slack_api):
    payload = click(waiting_workflow)
    payload["team"]["id"] = "TOTHER"
    integration.pk = None
    integration.integration_id = "TOTHER"
    integration.save()  # a second workspace, also ours
    response = post_interaction(client, payload)
    assert response.status_code == 200
    assert signals_received(waiting_workflow) == []


def test_temporal_down_during_click_tells_the_user_to_retry(client, waiting_workflow, settings, slack_api):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    response = post_interaction(client, click(waiting_workflow))
    assert response.status_code == 200
    [note] = slack_api.calls_to("chat.postEphemeral")
    assert "try again" in note.args["text"].lower()


def test_unsigned_click_is_401_and_signals_nothing(client, waiting_workflow, slack_api):
    body = urlencode({"payload": json.dumps(click(waiting_workflow))}).encode()
    headers = sign(body, secret="not-our-secret")
    response = client.post("/slack/interactivity", data=body, content_type="application/x-www-form-urlencoded", **headers)
    assert response.status_code == 401
    assert signals_received(waiting_workflow) == []


def test_stale_click_is_401(client, waiting_workflow):
    response = post_interaction(client, click(waiting_workflow), timestamp=int(time.time()) - 600)
    assert response.status_code == 401
    assert signals_received(waiting_workflow) == []


@pytest.mark.parametrize(
    "body",
    [b"payload=not-json", b"nothing=here", urlencode({"payload": json.dumps({"no": "type"})}).encode()],
    ids=["payload-not-json", "no-payload", "no-type"],
)
def test_unreadable_payload_is_400(client, body):
    response = client.post("/slack/interactivity", data=body, content_type="application/x-www-form-urlencoded", **sign(body))
    assert response.status_code == 400


def test_picker_click_with_a_garbled_value_is_400(client, integration, slack_api):
    payload = click("posthog-code-mention-T0TEST:Ev1")
    payload["actions"][0]["value"] = "{not json"
    assert post_interaction(client, payload).status_code == 400


def test_other_interactions_are_acknowledged_and_ignored(client, integration, slack_api):
    assert post_interaction(client, {"type": "view_submission", "team": {"id": TEAM_ID}}).status_code == 200
    assert post_interaction(client, {"type": "block_actions", "team": {"id": TEAM_ID}, "actions": [{"action_id": "other"}]}).status_code == 200
    assert slack_api.calls == []


def test_interactivity_rejects_get_and_oversized_bodies(client):
    assert client.get("/slack/interactivity").status_code == 405
    body = b"payload=" + b"x" * (1024 * 1024 + 1)
    assert client.post("/slack/interactivity", data=body, content_type="application/x-www-form-urlencoded", **sign(body)).status_code == 413


# --- Only what the picker offered, checked before the message is touched ----------------------------


@pytest.mark.parametrize("field", ["team", "container", "user", "channel", "message"])
def test_payload_whose_objects_are_plain_strings_is_400(client, waiting_workflow, slack_api, field):
    payload = click(waiting_workflow)
    payload[field] = "just-a-string"
    if field == "channel":
        payload["container"].pop("channel_id")
    if field == "message":
        payload["container"].pop("message_ts")
    response = post_interaction(client, payload)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_request"
    assert signals_received(waiting_workflow) == []
    assert slack_api.calls == []


def test_signed_click_naming_a_repository_that_was_not_offered_leaves_the_picker_alone(client, waiting_workflow, slack_api):
    payload = click(waiting_workflow)
    payload["actions"][0]["value"] = json.dumps({"workflow_id": waiting_workflow, "repository": "evil/repo"})
    response = post_interaction(client, payload)
    assert response.status_code == 200
    assert signals_received(waiting_workflow) == []
    assert slack_api.calls_to("chat.update") == []  # the picker keeps its buttons: others can still pick
    [note] = slack_api.calls_to("chat.postEphemeral")
    assert note.args["user"] == "U111" and "isn't one of the repositories" in note.args["text"]

    # A real choice still goes through afterwards.
    assert post_interaction(client, click(waiting_workflow, repository="acme/web")).status_code == 200
    assert signals_received(waiting_workflow) == [("repo_selected", ["acme/web"])]
    [update] = slack_api.calls_to("chat.update")
    assert update.args["text"] == "<@U111> picked *acme/web*."


def test_click_from_another_channel_than_the_picker_is_refused(client, waiting_workflow, slack_api):
    payload = click(waiting_workflow)
    payload["container"]["channel_id"] = "C999"
    assert post_interaction(client, payload).status_code == 200
    assert signals_received(waiting_workflow) == []
    assert slack_api.calls_to("chat.update") == []


def test_actions_that_is_not_a_list_is_acknowledged_and_ignored(client, integration, slack_api):
    assert post_interaction(client, {"type": "block_actions", "team": {"id": TEAM_ID}, "actions": 5}).status_code == 200
    assert slack_api.calls == []
