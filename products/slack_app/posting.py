"""The one policy for every message the bot sends: post or raise, post quietly, post once.

Every bot message (the webhook's replies, the workflow's replies, picker updates, usage
alerts) goes through these functions, so the rules are the same everywhere:

* **Post or raise** (`post_message`): a Slack failure becomes a typed `SlackPostError`:
  `SlackRateLimited` (429, with Retry-After; never slept on in process), `SlackRefused`
  (a refusal no retry fixes: revoked token, missing scope, channel gone...) or
  `SlackUnavailable` (5xx, timeout, connection refused). With `fallback_user`, a refusal
  (not a 429) is shown to that user ephemerally instead.
* **Post quietly** (`post_message_quietly`): the same, but a failure is logged and
  swallowed; for callers that have already decided the outcome (a denial, an alert).
* **Post once** (`post_once`): at most one message per (event, step), even across a
  crash between the post and the database write. A ledger row (`BotMessage`) is claimed
  before posting; the message carries Slack message metadata naming the event and the
  step (`METADATA_EVENT_TYPE`), so a retry that finds a claim without a `ts` (the
  previous attempt died mid-post) looks for that metadata in the thread
  (`conversations.replies` with `include_all_metadata`) before posting again.

Messages are posted after the database writes they follow have committed, never inside
a transaction: callers commit first (the ledger claim is its own autocommitted write).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import IntegrityError
from slack_sdk.errors import SlackApiError, SlackClientError

from .errors import SlackPostError, SlackRateLimited, SlackRefused, SlackUnavailable
from .models import BotMessage, Integration
from .slack_client import get_slack_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Slack error codes that retrying cannot fix (the bot's token, scopes or channel access must change).
PERMANENT_SLACK_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "team_access_not_granted",
        "invalid_blocks",
        "msg_too_long",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "message_not_found",
        "cant_update_message",
        "user_not_in_channel",
    }
)

# Slack message metadata event type on every message posted with `post_once` (a contract:
# old messages in threads carry it, and `post_once` looks for it after a crash).
METADATA_EVENT_TYPE = "posthog_code_bot_message"
EPHEMERAL_TS = "ephemeral"  # ledger ts of a message shown ephemerally (it has no ts to find)
THREAD_PAGES_SEARCHED = 10  # 10 pages of 200 replies: far longer than any thread the bot works in


def retry_after_seconds(error: SlackApiError, default: int = 30) -> int:
    """Seconds Slack asks us to wait before retrying (from Retry-After)."""
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return default


def slack_error_code(error: SlackApiError) -> str:
    response = error.response
    if response is None:
        return "unknown"
    try:
        return str(response.get("error") or f"http_{response.status_code}")
    except Exception:  # noqa: BLE001 - a non-JSON answer (an HTML 502 page)
        return f"http_{getattr(response, 'status_code', 'unknown')}"


def call_slack(what: str, call: Callable[[], T]) -> T:
    """Run one Slack Web API call; raise a typed `SlackPostError` saying whether retrying can help."""
    try:
        return call()
    except SlackApiError as error:
        status = getattr(error.response, "status_code", None)
        code = slack_error_code(error)
        if status == 429:
            delay = retry_after_seconds(error)
            raise SlackRateLimited(f"Slack rate limited {what}; retry in {delay}s", retry_after=delay) from error
        if code in PERMANENT_SLACK_ERRORS:
            raise SlackRefused(f"Slack refused {what}: {code}", code=code) from error
        raise SlackUnavailable(f"Slack failed {what}: {code}", code=code) from error
    except (SlackClientError, OSError, TimeoutError) as error:
        raise SlackUnavailable(f"Slack unreachable for {what}: {error!r}", code=type(error).__name__) from error


# --- Post or raise / quietly --------------------------------------------------------------------


def post_message(
    integration: Integration,
    *,
    channel: str,
    text: str,
    thread_ts: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    fallback_user: str | None = None,
) -> str:
    """Post `text` (in the thread `thread_ts`, if given) and return the new message's ts.

    Raises `SlackPostError`. With `fallback_user`, a refusal other than a 429 (typically
    `not_in_channel`) is shown to that user only instead, and "" is returned.
    """
    kwargs: dict[str, Any] = {"channel": channel, "text": text}
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    if blocks is not None:
        kwargs["blocks"] = blocks
    if metadata is not None:
        kwargs["metadata"] = metadata
    client = get_slack_client(integration)
    try:
        response = call_slack("chat.postMessage", lambda: client.chat_postMessage(**kwargs))
    except SlackRateLimited:
        raise
    except SlackPostError as error:
        if not fallback_user:
            raise
        logger.warning("slack postMessage failed in %s (%s); telling %s ephemerally", channel, error.code, fallback_user)
        post_ephemeral(integration, channel=channel, user=fallback_user, text=text, thread_ts=thread_ts)
        return ""
    return str(response.get("ts") or "")


def post_message_quietly(integration: Integration, **kwargs: Any) -> str | None:
    """`post_message`, but a Slack failure is logged, not raised: returns the ts, or None if nothing was posted."""
    try:
        return post_message(integration, **kwargs)
    except SlackPostError as error:
        logger.warning("could not post to Slack in %s: %s", kwargs.get("channel"), error)
        return None


def post_ephemeral(integration: Integration, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
    """Show `text` to `user` only. Raises `SlackPostError`."""
    kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    client = get_slack_client(integration)
    call_slack("chat.postEphemeral", lambda: client.chat_postEphemeral(**kwargs))


def post_ephemeral_quietly(integration: Integration, *, channel: str, user: str, text: str) -> None:
    """`post_ephemeral`, logged instead of raised (a note to one clicker is a courtesy)."""
    try:
        post_ephemeral(integration, channel=channel, user=user, text=text)
    except SlackPostError as error:
        logger.warning("could not send an ephemeral note to %s in %s: %s", user, channel, error)


def update_message(integration: Integration, *, channel: str, ts: str, text: str) -> None:
    """Replace a message's text and blocks (e.g. the picker, once answered). Raises `SlackPostError`."""
    client = get_slack_client(integration)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    call_slack("chat.update", lambda: client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))


def add_reaction(integration: Integration, *, channel: str, ts: str, name: str) -> None:
    """React to a message; a reaction that is already there is not an error. Raises `SlackPostError`."""
    client = get_slack_client(integration)
    try:
        call_slack("reactions.add", lambda: client.reactions_add(channel=channel, timestamp=ts, name=name))
    except SlackPostError as error:
        if error.code != "already_reacted":
            raise


# --- Post once --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One bot message of one Slack event: `key` is the event's workflow id, `name` the step."""

    key: str
    name: str

    def metadata(self) -> dict[str, Any]:
        return {"event_type": METADATA_EVENT_TYPE, "event_payload": {"workflow_id": self.key, "step": self.name}}


def post_once(
    integration: Integration,
    step: Step,
    *,
    channel: str,
    thread_ts: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    fallback_user: str | None = None,
    after_crash: str = "look_in_thread",
) -> str | None:
    """Post the message of `step` unless it has been posted already; return its ts (None: not posted now).

    The ledger row is claimed (committed) first. A row with a ts means it was posted:
    that ts is returned. A row without one means another attempt claimed it and did not
    finish: with `after_crash="look_in_thread"` (activities: that attempt died) the thread
    is searched for the step's metadata and the message is posted only if it is not
    there; with `after_crash="skip"` (the webhook: a concurrent delivery is posting it)
    nothing is posted and None is returned.

    Raises `SlackPostError` if the post fails. A refusal or a 429 releases the claim (it
    certainly was not posted); after a timeout or a 5xx the claim stays without a ts, so the
    next attempt searches the thread first.
    """
    row, claimed = _claim(step, channel=channel, thread_ts=thread_ts)
    if not claimed:
        if row.ts:
            return row.ts
        if after_crash == "skip":
            return None
        found = find_step_in_thread(integration, step, channel=channel, thread_ts=thread_ts)
        if found:
            BotMessage.objects.filter(pk=row.pk).update(ts=found)
            return found
    try:
        ts = post_message(
            integration,
            channel=channel,
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
            metadata=step.metadata(),
            fallback_user=fallback_user,
        )
    except (SlackRateLimited, SlackRefused):
        # Certainly not posted: release the claim so a later attempt posts without searching.
        BotMessage.objects.filter(pk=row.pk, ts="").delete()
        raise
    # SlackUnavailable (a timeout, a 5xx) may hide a message Slack did store: the claim stays
    # without a ts, so the next attempt looks in the thread before posting again.
    BotMessage.objects.filter(pk=row.pk).update(ts=ts or EPHEMERAL_TS)
    return ts


def _claim(step: Step, *, channel: str, thread_ts: str) -> tuple[BotMessage, bool]:
    try:
        return BotMessage.objects.get_or_create(
            key=step.key, step=step.name, defaults={"channel": channel, "thread_ts": thread_ts}
        )
    except IntegrityError:  # lost a race get_or_create could not absorb
        return BotMessage.objects.get(key=step.key, step=step.name), False


def find_step_in_thread(integration: Integration, step: Step, *, channel: str, thread_ts: str) -> str | None:
    """Return the ts of the thread's message tagged with `step`'s metadata, or None. Raises `SlackPostError`."""
    client = get_slack_client(integration)
    cursor: str | None = None
    for _ in range(THREAD_PAGES_SEARCHED):
        kwargs: dict[str, Any] = {"channel": channel, "ts": thread_ts, "include_all_metadata": True, "limit": 200}
        if cursor:
            kwargs["cursor"] = cursor
        try:
            response = call_slack("conversations.replies", lambda: client.conversations_replies(**kwargs))
        except SlackRefused as error:
            if error.code in {"thread_not_found", "channel_not_found", "not_in_channel"}:
                return None
            raise
        except SlackUnavailable as error:
            if error.code == "thread_not_found":
                return None
            raise
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if (
                metadata.get("event_type") == METADATA_EVENT_TYPE
                and payload.get("workflow_id") == step.key
                and payload.get("step") == step.name
            ):
                return str(message.get("ts") or EPHEMERAL_TS)
        cursor = ((response.get("response_metadata") or {}).get("next_cursor")) or None
        if not cursor:
            return None
    return None
