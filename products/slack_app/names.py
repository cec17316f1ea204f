"""People's and channels' names for what the bot writes into tasks (the task page shows text, not Slack ids).

Names come from `users.info` and `conversations.info` and are cached in Redis for an
hour (`slack:name:<team>:<id>`), so a busy thread costs one lookup per person per hour.
A lookup Slack refuses (no `channels:read` scope, unknown user) falls back to the id;
a 429 surfaces as `SlackRateLimited` so the activity backs off through Temporal. The
cache is best effort: with Redis down every name is looked up again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from posthog_app.redis_client import get_client as get_redis

from .errors import SlackPostError, SlackRateLimited
from .models import Integration
from .posting import call_slack
from .slack_client import get_slack_client

logger = logging.getLogger(__name__)

NAME_CACHE_TTL_SECONDS = 3600
CACHE_TIMEOUT_SECONDS = 0.5


def _cache_key(integration: Integration, slack_id: str) -> str:
    return f"slack:name:{integration.integration_id}:{slack_id}"


def _cached(integration: Integration, slack_id: str) -> str | None:
    try:
        value = get_redis(CACHE_TIMEOUT_SECONDS).get(_cache_key(integration, slack_id))
    except Exception:  # noqa: BLE001 - the cache is an optimisation
        return None
    return value.decode() if isinstance(value, bytes) else value


def _remember(integration: Integration, slack_id: str, name: str) -> None:
    try:
        get_redis(CACHE_TIMEOUT_SECONDS).set(_cache_key(integration, slack_id), name, ex=NAME_CACHE_TTL_SECONDS)
    except Exception:  # noqa: BLE001
        pass


def _name(integration: Integration, slack_id: str, method: str, call: Callable[[WebClient], Any], pick: Callable[[Any], str]) -> str:
    """The cached name of `slack_id`, else Slack's answer to `method` read with `pick`; the id itself if Slack will not say."""
    if not slack_id:
        return ""
    cached = _cached(integration, slack_id)
    if cached:
        return cached
    client = get_slack_client(integration)
    try:
        response = call_slack(method, lambda: call(client))
    except SlackRateLimited:
        raise
    except SlackPostError as error:
        logger.info("no name for Slack id %s (%s): %s", slack_id, method, error)
        return slack_id
    name = pick(response) or slack_id
    _remember(integration, slack_id, name)
    return name


def _user_display_name(response: Any) -> str:
    user = response.get("user") or {}
    profile = user.get("profile") or {}
    return profile.get("display_name") or user.get("real_name") or profile.get("real_name") or user.get("name") or ""


def user_name(integration: Integration, user_id: str) -> str:
    """Return the user's Slack display name (or real name); the id itself if Slack will not say."""
    return _name(integration, user_id, "users.info", lambda client: client.users_info(user=user_id), _user_display_name)


def channel_name(integration: Integration, channel_id: str) -> str:
    """Return the channel's name (without "#"); the id itself if Slack will not say (e.g. a DM)."""
    return _name(
        integration,
        channel_id,
        "conversations.info",
        lambda client: client.conversations_info(channel=channel_id),
        lambda response: (response.get("channel") or {}).get("name") or "",
    )
