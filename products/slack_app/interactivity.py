"""What to do with one verified interactivity payload: the repository picker's buttons.

A click signals the waiting mention workflow (`repo_selected(repo)` or `no_repo_needed()`)
through `temporal.client`, then replaces the picker with what was chosen so nobody
clicks again. A workflow that is gone (picker timed out, already answered, never
existed) gets a polite ephemeral note to the clicker, never an error page: Slack shows
users a warning for any non-200 answer to a click, and does not redeliver clicks.

Before anything is signalled or the message touched, the click is checked against the
picker the workflow recorded (`RepoPicker`: its workflow, channel and offered
repositories). A click naming a repository that was not offered (a forged or replayed
payload) gets an ephemeral note and the picker stays as it is; a click on a picker we
have no record of is treated as expired.

Two people clicking different buttons at once both reach the workflow; it acts on the
first signal it sees, and the picker shows the last click's text. Rare, and the
"On it" reply in the thread names the repository actually used.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.utils import timezone

from posthog_app.json_input import InvalidJSON, parse_json
from temporal.client import (
    TemporalUnavailable,
    WorkflowGone,
    mention_workflow_id,
    signal_no_repo_needed,
    signal_repo_selected,
)

from . import messages, validation
from .errors import MalformedRequest, SlackPostError
from .models import Integration, RepoPicker
from .posting import post_ephemeral_quietly, update_message
from .workspaces import find_integration

logger = logging.getLogger(__name__)

PICKER_ACTIONS = frozenset({messages.ACTION_REPO_SELECTED, messages.ACTION_NO_REPO_NEEDED})


class InteractionOutcome(str, enum.Enum):
    IGNORED = "ignored"
    UNKNOWN_WORKSPACE = "unknown_workspace"
    SIGNALLED = "signalled"
    NOT_OFFERED = "not_offered"
    WORKFLOW_GONE = "workflow_gone"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class InteractionResult:
    outcome: InteractionOutcome
    workflow_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class PickerClick:
    team_id: str
    user: str
    channel: str
    message_ts: str
    action_id: str
    workflow_id: str
    repository: str | None


def parse_payload(body: bytes) -> dict[str, Any]:
    """Return the JSON `payload` form field of an interactivity request; MalformedRequest otherwise."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
        raw = form["payload"][0]
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise MalformedRequest("body must be a form with a JSON 'payload' field") from None
    try:
        payload = parse_json(raw)
    except InvalidJSON as exc:
        raise MalformedRequest(f"payload: {exc.reason}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise MalformedRequest("payload must be a JSON object with a 'type'")
    return payload


def handle_payload(payload: dict[str, Any]) -> InteractionResult:
    """Act on one interactivity payload. Raises MalformedRequest for a picker click we cannot read."""
    if payload["type"] != "block_actions":
        return InteractionResult(InteractionOutcome.IGNORED, detail=f"payload type {payload['type']!r}")
    actions = payload.get("actions")
    if not isinstance(actions, list):
        actions = []
    action = next((a for a in actions if isinstance(a, dict) and a.get("action_id") in PICKER_ACTIONS), None)
    if action is None:
        return InteractionResult(InteractionOutcome.IGNORED, detail="no picker action")
    click = _parse_click(payload, action)

    integration = find_integration(click.team_id)
    if integration is None:
        logger.warning("picker click from unknown workspace %s; ignoring", click.team_id)
        return InteractionResult(InteractionOutcome.UNKNOWN_WORKSPACE, detail=click.team_id)
    # Button values are ours (signed by Slack), but only ever signal this workspace's workflows.
    if not click.workflow_id.startswith(mention_workflow_id(click.team_id, "")):
        _ephemeral(integration, click, messages.WORKFLOW_GONE_TEXT)
        return InteractionResult(InteractionOutcome.WORKFLOW_GONE, workflow_id=click.workflow_id, detail="foreign workflow id")
    # Only what the picker offered, on the picker the workflow posted: checked before the message is touched.
    picker = RepoPicker.objects.filter(workflow_id=click.workflow_id, integration__integration_id=click.team_id).first()
    if picker is None or picker.channel != click.channel:
        logger.info("click for a picker we did not post (%s in %s)", click.workflow_id, click.channel)
        _ephemeral(integration, click, messages.WORKFLOW_GONE_TEXT)
        return InteractionResult(InteractionOutcome.WORKFLOW_GONE, workflow_id=click.workflow_id, detail="no such picker")
    if click.action_id == messages.ACTION_REPO_SELECTED and not picker.offers(click.repository or ""):
        logger.warning("click naming %r, which picker %s did not offer; ignored", click.repository, click.workflow_id)
        _ephemeral(integration, click, messages.NOT_OFFERED_TEXT)
        return InteractionResult(InteractionOutcome.NOT_OFFERED, workflow_id=click.workflow_id)

    try:
        if click.action_id == messages.ACTION_REPO_SELECTED:
            signal_repo_selected(click.workflow_id, click.repository or "")
            chosen = messages.REPO_CHOSEN_TEXT.format(user=click.user, repository=click.repository)
        else:
            signal_no_repo_needed(click.workflow_id)
            chosen = messages.NO_REPO_CHOSEN_TEXT.format(user=click.user)
    except WorkflowGone:
        logger.info("picker click for closed or unknown workflow %s", click.workflow_id)
        _ephemeral(integration, click, messages.WORKFLOW_GONE_TEXT)
        return InteractionResult(InteractionOutcome.WORKFLOW_GONE, workflow_id=click.workflow_id)
    except TemporalUnavailable as exc:
        logger.error("cannot signal %s, Temporal unavailable: %s", click.workflow_id, exc)
        _ephemeral(integration, click, messages.TEMPORARILY_UNAVAILABLE_TEXT)
        return InteractionResult(InteractionOutcome.UNAVAILABLE, workflow_id=click.workflow_id)

    RepoPicker.objects.filter(pk=picker.pk, answered_at__isnull=True).update(answered_at=timezone.now())
    try:
        update_message(integration, channel=click.channel, ts=click.message_ts, text=chosen)
    except SlackPostError as exc:  # the signal went through; a stale picker is cosmetic
        logger.warning("could not update picker %s/%s: %s", click.channel, click.message_ts, exc)
    return InteractionResult(InteractionOutcome.SIGNALLED, workflow_id=click.workflow_id)


def _object(value: Any, name: str) -> dict[str, Any]:
    """`value` if it is a JSON object, {} if absent; anything else is a malformed payload."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"block_actions payload: {name} must be an object")
    return value


def _parse_click(payload: dict[str, Any], action: dict[str, Any]) -> PickerClick:
    team = _object(payload.get("team"), "team")
    user = _object(payload.get("user"), "user")
    container = _object(payload.get("container"), "container")
    channel = container.get("channel_id") or _object(payload.get("channel"), "channel").get("id")
    message_ts = container.get("message_ts") or _object(payload.get("message"), "message").get("ts")
    raw_value = action.get("value")
    if not isinstance(raw_value, str):
        raise MalformedRequest("picker button value is not JSON")
    try:
        value = parse_json(raw_value)
    except InvalidJSON:
        raise MalformedRequest("picker button value is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedRequest("picker button value lacks workflow_id")
    workflow_id = validation.require("button workflow_id", value.get("workflow_id"), validation.WORKFLOW_ID)
    repository = value.get("repository")
    if action["action_id"] == messages.ACTION_REPO_SELECTED:
        repository = validation.require("button repository", repository, validation.REPOSITORY)
    return PickerClick(
        team_id=validation.require("team.id", team.get("id"), validation.TEAM_ID),
        user=validation.require("user.id", user.get("id"), validation.USER_ID),
        channel=validation.require("channel", channel, validation.CHANNEL_ID),
        message_ts=validation.require("message ts", message_ts, validation.TS),
        action_id=action["action_id"],
        workflow_id=workflow_id,
        repository=repository if isinstance(repository, str) else None,
    )


def _ephemeral(integration: Integration, click: PickerClick, text: str) -> None:
    post_ephemeral_quietly(integration, channel=click.channel, user=click.user, text=text)
