"""What to do with one verified Slack Events API delivery; the webhook view maps the outcome to a response.

Rules (see issue 3 and DESIGN.md "Principles"):

* `url_verification` answers the challenge.
* Only `app_mention` events are acted on. Edits and messages written by bots or apps
  are ignored.
* `message` events are never acted on. When the app is also subscribed to
  `message.channels` (it needs that to read thread context), a mention in a thread
  arrives twice: as `app_mention` and as `message`, with *different* event ids. The
  workflow id is derived from the event id, so acting on both would start two
  workflows for one mention. Acting on `app_mention` only is the one rule that cannot
  double-count, and it loses nothing: every @mention produces an `app_mention`.
* Accepted mentions and refusals are written to the inbox (`inbox.record`: one row per
  workspace + event id) and the webhook answers 200 at once; the relay in the worker
  process starts the workflow or posts the refusal (`relay.py`). No Slack call and no
  Temporal call happen inside the request, so Temporal's state never decides the
  answer, and an outage of Temporal longer than Slack's retry schedule loses nothing.
* Redeliveries (`X-Slack-Retry-Num`) are processed like first deliveries: they find the
  event's row and write nothing (outcome `duplicate`, or the refusal on record). The
  relay starts the workflow with the id `mention_workflow_id(team, event_id)` and
  USE_EXISTING / REJECT_DUPLICATE, so even a row relayed twice is one workflow.
* Over quota: a denial recorded (posted once by the relay), no workflow. Quota state
  unknown (Redis down): `QUOTA_CHECK_FAILURE_MODE` decides (open: record the mention
  anyway, the workflow's own gate retries; closed: "try again shortly" recorded).
* PostgreSQL unreachable: `TryAgainLater` (503) so Slack delivers again; nothing was
  written, so nothing is half done.
* Every field acted on is checked for shape and length first (`validation.py`): a
  field that does not fit is a 400 and nothing is recorded.
* The quota read gives up after 250 ms, so the webhook answers well inside Slack's 3
  seconds even with Redis blackholed.
* The workspace's integration comes from a per-process cache, checked on every mention
  against the workspaces' generation read in the quota read's round trip: an uninstall,
  a revocation or a reinstall counts from the next mention on. When the cache has the
  workspace, that round trip is made by the inbox batch the row is written in, one for
  every mention of the batch (`inbox.QuotaCheck`); when it has not, or the generation
  moved, or Redis did not answer, the mention is decided here (`_target_and_quota`:
  with Redis unreachable the lookup is made in the database) and recorded after.

Outcomes keep their meaning for Slack's logs and ours: `started` is the first delivery of
an accepted mention (recorded; the relay starts it within moments), `duplicate` a
redelivery of one, `denied_over_quota` / `refused_quota_unknown` a refusal (first or
redelivered).
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
import redis
from django.db import InterfaceError, OperationalError

from posthog_app.redis_client import OneRoundTrip
from products.billing.facade import QuotaResource, QuotaStateUnavailable, is_team_limited, queue_team_limited, team_limited_from
# temporal.client is the only temporal/ module products/ may import (it re-exports the names used here).
from temporal.client import mention_workflow_id

from . import inbox, lifecycle, validation, workspaces
from .errors import MalformedRequest, TryAgainLater
from .inbox_models import MentionInbox
from .workspaces import MentionTarget

logger = logging.getLogger(__name__)

# Authors and edits we never act on (Slack marks them with these subtypes or fields).
IGNORED_SUBTYPES = frozenset({"bot_message", "message_changed", "message_deleted", "message_replied"})
# The webhook has Slack's 3 seconds: a quota read that takes longer than this counts as
# "quota state unavailable" (QUOTA_CHECK_FAILURE_MODE decides), never a slow answer.
QUOTA_CHECK_TIMEOUT_SECONDS = 0.25


class Outcome(str, enum.Enum):
    CHALLENGE = "challenge"
    IGNORED = "ignored"
    UNKNOWN_WORKSPACE = "unknown_workspace"
    DENIED_OVER_QUOTA = "denied_over_quota"
    REFUSED_QUOTA_UNKNOWN = "refused_quota_unknown"
    STARTED = "started"
    DUPLICATE = "duplicate"
    HANDLED = "handled"  # a workspace lifecycle or Home tab event (lifecycle.py)


@dataclass(frozen=True)
class EventResult:
    outcome: Outcome
    detail: str = ""
    challenge: str | None = None
    workflow_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """Slack's delivery metadata (headers), for logs only: redeliveries are processed like the first."""

    retry_num: int = 0
    retry_reason: str = ""


def handle_envelope(envelope: Any, delivery: Delivery = Delivery()) -> EventResult:
    """Decide and act on one verified Events API envelope. Raises MalformedRequest / TryAgainLater."""
    try:
        return _handle_envelope(envelope, delivery)
    except (OperationalError, InterfaceError) as exc:
        # The database cannot be reached: nothing was recorded, so Slack must deliver again.
        logger.error("database unavailable (%s); answering 503 so Slack delivers again", exc)
        raise TryAgainLater("database unavailable; deliver again") from exc


def _handle_envelope(envelope: Any, delivery: Delivery) -> EventResult:
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        raise MalformedRequest("body must be a JSON object with a 'type'")
    kind = envelope["type"]
    if kind == "url_verification":
        challenge = envelope.get("challenge")
        if not isinstance(challenge, str):
            raise MalformedRequest("url_verification without a 'challenge'")
        return EventResult(Outcome.CHALLENGE, challenge=challenge)
    if kind != "event_callback":
        return EventResult(Outcome.IGNORED, detail=f"envelope type {kind!r}")

    event = envelope.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise MalformedRequest("event_callback without an 'event' object with a 'type'")
    if event["type"] != "app_mention":
        # Workspace lifecycle and the Home tab (uninstall, revocation, app_home_opened) live in lifecycle.py.
        if (handled := lifecycle.handle_workspace_event(envelope, event)) is not None:
            return EventResult(Outcome.HANDLED, detail=handled)
        # Includes `message` events carrying the same mention: see the module docstring.
        return EventResult(Outcome.IGNORED, detail=f"event type {event['type']!r}")
    if reason := _ignore_reason(event):
        return EventResult(Outcome.IGNORED, detail=reason)

    # Every field is checked before anything is looked up, started or written (see validation.py).
    team_id = validation.require("team_id", envelope.get("team_id"), validation.TEAM_ID)
    event_id = validation.require("event_id", envelope.get("event_id"), validation.EVENT_ID)
    channel = validation.require("event.channel", event.get("channel"), validation.CHANNEL_ID)
    user = validation.require("event.user", event.get("user"), validation.USER_ID)
    ts = validation.require("event.ts", event.get("ts"), validation.TS)
    thread_ts = validation.optional("event.thread_ts", event.get("thread_ts"), validation.TS) or ts
    validation.optional("event.event_ts", event.get("event_ts"), validation.TS)
    validation.mention_text(event.get("text"))

    workflow_id = mention_workflow_id(team_id, event_id)
    mention = dict(slack_team_id=team_id, event_id=event_id, workflow_id=workflow_id, event=event, channel=channel,
                   thread_ts=thread_ts, user=user)
    cached = workspaces.cached_target(team_id)
    if cached is not None and cached.target is not None:
        # The usual case: the quota read is made by the inbox batch this row is written in (inbox.QuotaCheck).
        check = inbox.QuotaCheck(
            cached.target.api_token, cached.generation, MentionInbox.Action.DENY_OVER_QUOTA, QUOTA_CHECK_TIMEOUT_SECONDS
        )
        recorded = inbox.record(integration_id=cached.target.integration_id, action=MentionInbox.Action.START,
                                check=check, **mention)
        if recorded is not inbox.UNDECIDED:
            return _recorded(recorded, workflow_id, delivery)
    target, limited = _target_and_quota(team_id)
    if target is None:
        logger.warning("slack app_mention from unknown workspace %s (event %s); ignoring", team_id, event_id)
        return EventResult(Outcome.UNKNOWN_WORKSPACE, detail=team_id)

    action = MentionInbox.Action.START
    if isinstance(limited, QuotaStateUnavailable):
        if settings.QUOTA_CHECK_FAILURE_MODE == "closed":
            logger.error("quota state unavailable (%s); refusing mention %s (QUOTA_CHECK_FAILURE_MODE=closed)", limited, workflow_id)
            action = MentionInbox.Action.TRY_AGAIN
        else:
            logger.error(
                "quota state unavailable (%s); accepting mention %s anyway (QUOTA_CHECK_FAILURE_MODE=open), "
                "the workflow's quota gate will check again",
                limited,
                workflow_id,
            )
        limited = False
    if limited:
        action = MentionInbox.Action.DENY_OVER_QUOTA

    # One row per event; the relay posts the refusal or starts the workflow (see the module docstring).
    recorded = inbox.record(integration_id=target.integration_id, action=action, **mention)
    return _recorded(recorded, workflow_id, delivery)


def _recorded(recorded: inbox.Recorded, workflow_id: str, delivery: Delivery) -> EventResult:
    outcome = _OUTCOMES[(recorded.action, recorded.created)]
    logger.info(
        "mention %s: %s (delivery retry %s %s)", workflow_id, outcome.value, delivery.retry_num, delivery.retry_reason
    )
    return EventResult(outcome, workflow_id=workflow_id)


def _target_and_quota(team_id: str) -> tuple[MentionTarget | None, bool | QuotaStateUnavailable]:
    """The workspace's enabled integration and whether its project is over quota, in one Redis round trip when cached.

    One pipeline reads the workspaces' generation (workspaces.py) and the quota score of
    the cached project; the cached lookup stands if the generation has not moved, else it
    is made again in the database (and the quota read again if the project changed).
    Redis unreachable or slower than QUOTA_CHECK_TIMEOUT_SECONDS: the lookup comes from
    the database and the quota state is returned as the `QuotaStateUnavailable` to act on.
    """
    cached = workspaces.cached_target(team_id)
    try:
        pipe = OneRoundTrip(QUOTA_CHECK_TIMEOUT_SECONDS)
        pipe.get(workspaces.WORKSPACES_GENERATION_KEY)
        if cached is not None and cached.target is not None:
            queue_team_limited(pipe, cached.target.api_token, QuotaResource.AI_CREDITS)
        replies = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        workspaces.forget_targets()  # a change made meanwhile could not be announced
        return workspaces.load_target(team_id), QuotaStateUnavailable(str(exc))
    generation = replies[0]
    if cached is not None and cached.generation == generation:
        if cached.target is None:
            return None, False
        return cached.target, team_limited_from(replies[1])
    target = workspaces.load_target(team_id)
    workspaces.remember_target(team_id, target, generation)
    if target is None:
        return None, False
    if cached is not None and cached.target is not None and cached.target.api_token == target.api_token:
        return target, team_limited_from(replies[1])
    try:
        return target, is_team_limited(target.api_token, QuotaResource.AI_CREDITS, timeout=QUOTA_CHECK_TIMEOUT_SECONDS)
    except QuotaStateUnavailable as exc:
        return target, exc


# (action on record, recorded now?) -> outcome. A refusal is reported as such however often it is delivered.
_OUTCOMES = {
    (MentionInbox.Action.START, True): Outcome.STARTED,
    (MentionInbox.Action.START, False): Outcome.DUPLICATE,
    (MentionInbox.Action.DENY_OVER_QUOTA, True): Outcome.DENIED_OVER_QUOTA,
    (MentionInbox.Action.DENY_OVER_QUOTA, False): Outcome.DENIED_OVER_QUOTA,
    (MentionInbox.Action.TRY_AGAIN, True): Outcome.REFUSED_QUOTA_UNKNOWN,
    (MentionInbox.Action.TRY_AGAIN, False): Outcome.REFUSED_QUOTA_UNKNOWN,
}


def _ignore_reason(event: dict[str, Any]) -> str | None:
    if event.get("edited") or event.get("subtype") in IGNORED_SUBTYPES:
        return "edit or non-user message"
    if event.get("bot_id") or event.get("bot_profile") or event.get("app_id"):
        return "written by a bot or app"
    return None
