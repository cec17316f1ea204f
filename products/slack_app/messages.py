"""Every text the bot posts, and the helpers that post them (each takes an Integration).

Slack errors are raised as `slack_sdk.errors.SlackApiError` except where a helper says
otherwise; a 429 always surfaces (with `Retry-After`) so activities can back off
through Temporal rather than sleeping.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from slack_sdk.errors import SlackApiError

from products.tasks.services import task_page_url

from .models import Integration
from .slack_client import get_slack_client

logger = logging.getLogger(__name__)

QUOTA_DENIAL_TEXT = "Your team has used its monthly AI credits. Top up at {billing_url} to continue."
TRY_AGAIN_SHORTLY_TEXT = "I can't check your team's AI credits right now. Please try again shortly."
ON_IT_TEXT = "On it! Follow along at {url}"
APOLOGY_TEXT = "Sorry, something went wrong while starting this task. Please try again."
PICKER_PROMPT_TEXT = "Which repository should I work in?"
PICKER_TIMEOUT_TEXT = "I didn't hear back about which repository to use, so I've stopped. Mention me again to start over."
NO_REPOSITORY_LABEL = "No repository"
REPO_CHOSEN_TEXT = "<@{user}> picked *{repository}*."
NO_REPO_CHOSEN_TEXT = "<@{user}> picked no repository."
WORKFLOW_GONE_TEXT = "This request has expired or was already answered. Mention me again to start a new task."
TEMPORARILY_UNAVAILABLE_TEXT = "I couldn't pass that on just now. Please try again in a moment."

ACTION_REPO_SELECTED = "repo_selected"
ACTION_NO_REPO_NEEDED = "no_repo_needed"


def quota_denial_text() -> str:
    return QUOTA_DENIAL_TEXT.format(billing_url=settings.BILLING_URL)


def on_it_text(task_id: int) -> str:
    return ON_IT_TEXT.format(url=task_page_url(task_id))


def is_rate_limited(error: SlackApiError) -> bool:
    return getattr(error.response, "status_code", None) == 429


def retry_after_seconds(error: SlackApiError, default: int = 30) -> int:
    """Seconds Slack asks us to wait before retrying (from Retry-After)."""
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return default


def post_in_thread(
    integration: Integration, *, channel: str, thread_ts: str, text: str, blocks: list[dict[str, Any]] | None = None
) -> str:
    """Post `text` in the thread and return the new message's ts."""
    kwargs: dict[str, Any] = {"channel": channel, "thread_ts": thread_ts, "text": text}
    if blocks is not None:
        kwargs["blocks"] = blocks
    response = get_slack_client(integration).chat_postMessage(**kwargs)
    return str(response.get("ts") or "")


def post_ephemeral(integration: Integration, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
    """Show `text` to `user` only."""
    kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    get_slack_client(integration).chat_postEphemeral(**kwargs)


def post_in_thread_or_ephemeral(integration: Integration, *, channel: str, thread_ts: str, user: str, text: str) -> None:
    """Post in the thread; if Slack refuses (not a 429), tell the mentioning user privately instead.

    Typical refusals are `not_in_channel` or `channel_not_found` for a bot that was
    mentioned in a channel it cannot write to. A 429 is re-raised for the caller to back off.
    """
    try:
        post_in_thread(integration, channel=channel, thread_ts=thread_ts, text=text)
    except SlackApiError as error:
        if is_rate_limited(error):
            raise
        logger.warning(
            "slack postMessage failed (%s); falling back to an ephemeral message",
            error.response.get("error") if error.response is not None else "unknown",
        )
        post_ephemeral(integration, channel=channel, user=user, text=text, thread_ts=thread_ts)


def post_quota_denial(integration: Integration, *, channel: str, thread_ts: str, user: str) -> None:
    """Tell the thread the team is out of AI credits (ephemeral to `user` if the post fails)."""
    post_in_thread_or_ephemeral(integration, channel=channel, thread_ts=thread_ts, user=user, text=quota_denial_text())


def add_reaction(integration: Integration, *, channel: str, ts: str, name: str) -> None:
    """React to a message; a reaction that is already there is not an error."""
    try:
        get_slack_client(integration).reactions_add(channel=channel, timestamp=ts, name=name)
    except SlackApiError as error:
        if error.response is not None and error.response.get("error") == "already_reacted":
            return
        raise


def repo_picker_blocks(workflow_id: str, repositories: list[str]) -> list[dict[str, Any]]:
    """Blocks for the picker: one button per repository, plus "No repository"."""
    buttons: list[dict[str, Any]] = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": repository[:75]},
            "action_id": ACTION_REPO_SELECTED,
            # Slack requires action_ids to be unique within a block: block_id groups, value carries the choice.
            "value": json.dumps({"workflow_id": workflow_id, "repository": repository}),
        }
        for repository in repositories
    ]
    buttons.append(
        {
            "type": "button",
            "text": {"type": "plain_text", "text": NO_REPOSITORY_LABEL},
            "action_id": ACTION_NO_REPO_NEEDED,
            "value": json.dumps({"workflow_id": workflow_id}),
        }
    )
    # Slack allows 25 elements per actions block, and unique action_ids per block.
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": PICKER_PROMPT_TEXT}}]
    for i, button in enumerate(buttons):
        blocks.append({"type": "actions", "block_id": f"repo_picker_{i}", "elements": [button]})
    return blocks


def post_repo_picker(
    integration: Integration, *, channel: str, thread_ts: str, workflow_id: str, repositories: list[str]
) -> str:
    """Post the repository picker in the thread and return its ts."""
    return post_in_thread(
        integration,
        channel=channel,
        thread_ts=thread_ts,
        text=PICKER_PROMPT_TEXT,
        blocks=repo_picker_blocks(workflow_id, repositories),
    )


def update_message(integration: Integration, *, channel: str, ts: str, text: str) -> None:
    """Replace a message's text and blocks (e.g. the picker, once answered)."""
    get_slack_client(integration).chat_update(
        channel=channel, ts=ts, text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    )


def get_user_display_name(integration: Integration, user_id: str) -> str:
    """Return the user's Slack display name (or real name); the id itself if Slack will not say."""
    try:
        response = get_slack_client(integration).users_info(user=user_id)
    except SlackApiError as error:
        if is_rate_limited(error):
            raise
        return user_id
    user = response.get("user") or {}
    profile = user.get("profile") or {}
    return profile.get("display_name") or user.get("real_name") or profile.get("real_name") or user.get("name") or user_id
