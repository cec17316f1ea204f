"""What to do with one verified interactivity payload: the repository picker's buttons.

A click signals the waiting mention workflow (`repo_selected(repo)` or `no_repo_needed()`)
through `temporal.client`, then replaces the picker with what was chosen so nobody
clicks again. A workflow that is gone (picker timed out, already answered, never
existed) gets a polite ephemeral note to the clicker, never an error page: Slack shows
users a warning for any non-200 answer to a click, and does not redeliver clicks.

Two people clicking different buttons at once both reach the workflow; it acts on the
first signal it sees, and the picker shows the last click's text. Rare, and the
"On it" reply in the thread names the repository actually used.
"""
from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.errors import SlackApiError

from temporal.client import (
    TemporalUnavailable,
    WorkflowGone,
    mention_workflow_id,
    signal_no_repo_needed,
    signal_repo_selected,
)

from . import messages
from .errors import MalformedRequest
from .events import find_integration
from .models import Integration

logger = logging.getLogger(__name__)

PICKER_ACTIONS = frozenset({messages.ACTION_REPO_SELECTED, messages.ACTION_NO_REPO_NEEDED})


class InteractionOutcome(str, enum.Enum):
    IGNORED = "ignored"
    UNKNOWN_WORKSPACE = "unknown_workspace"
    SIGNALLED = "signalled"
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
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise MalformedRequest("body must be a form with a JSON 'payload' field") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise MalformedRequest("payload must be a JSON object with a 'type'")
    return payload


def handle_payload(payload: dict[str, Any]) -> InteractionResult:
    """Act on one interactivity payload. Raises MalformedRequest for a picker click we cannot read."""
    if payload["type"] != "block_actions":
        return InteractionResult(InteractionOutcome.IGNORED, detail=f"payload type {payload['type']!r}")
    actions = payload.get("actions") or []
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

    try:
        messages.update_message(integration, channel=click.channel, ts=click.message_ts, text=chosen)
    except Exception as exc:  # noqa: BLE001 - the signal went through; a stale picker is cosmetic
        logger.warning("could not update picker %s/%s: %r", click.channel, click.message_ts, exc)
    return InteractionResult(InteractionOutcome.SIGNALLED, workflow_id=click.workflow_id)


def _parse_click(payload: dict[str, Any], action: dict[str, Any]) -> PickerClick:
    team = payload.get("team") or {}
    user = payload.get("user") or {}
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id")
    message_ts = container.get("message_ts") or (payload.get("message") or {}).get("ts")
    try:
        value = json.loads(action.get("value") or "")
    except ValueError:
        raise MalformedRequest("picker button value is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("workflow_id"), str):
        raise MalformedRequest("picker button value lacks workflow_id")
    repository = value.get("repository")
    if action["action_id"] == messages.ACTION_REPO_SELECTED and not (isinstance(repository, str) and repository):
        raise MalformedRequest("repo_selected button value lacks repository")
    for name, field in (("team.id", team.get("id")), ("user.id", user.get("id")), ("channel", channel), ("message ts", message_ts)):
        if not isinstance(field, str) or not field:
            raise MalformedRequest(f"block_actions payload without {name}")
    return PickerClick(
        team_id=team["id"],
        user=user["id"],
        channel=channel,
        message_ts=message_ts,
        action_id=action["action_id"],
        workflow_id=value["workflow_id"],
        repository=repository if isinstance(repository, str) else None,
    )


def _ephemeral(integration: Integration, click: PickerClick, text: str) -> None:
    try:
        messages.post_ephemeral(integration, channel=click.channel, user=click.user, text=text)
    except (SlackApiError, OSError) as exc:
        logger.warning("could not send ephemeral note to %s: %r", click.user, exc)
