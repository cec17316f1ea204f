"""Turning Slack message markup into the plain text a task's title, description and follow-ups hold.

Slack writes people as `<@U123>`, channels as `<#C123|name>` and links as `<url|label>`;
the task page shows text as is, so ids are replaced by names (`names.py`) here, once,
when the task is written.
"""
from __future__ import annotations

import re
from collections.abc import Callable

TITLE_MAX_CHARS = 80

_LEADING_MENTIONS = re.compile(r"^\s*(?:<@[A-Z0-9]+(?:\|[^>]*)?>\s*)+")
_USER_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_MENTION = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL_MENTION = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_LINK_WITH_LABEL = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^<>|]+)>")

NameOf = Callable[[str], str]


def _plain_id(slack_id: str) -> str:
    return slack_id


def clean_mention_text(text: str, *, user_name: NameOf = _plain_id, channel_name: NameOf = _plain_id) -> str:
    """Return the mention's words: the leading @-mention of the bot dropped, people and channels by name, links as text."""
    text = _LEADING_MENTIONS.sub(" ", text or "")
    text = _USER_MENTION.sub(lambda m: "@" + (m.group(2) or user_name(m.group(1))), text)
    text = _CHANNEL_MENTION.sub(lambda m: "#" + (m.group(2) or channel_name(m.group(1))), text)
    text = _SPECIAL_MENTION.sub(r"@\1", text)
    text = _LINK_WITH_LABEL.sub(r"\2", text)
    text = _BARE_LINK.sub(r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def task_title(cleaned: str) -> str:
    """A title of at most 80 characters from the cleaned mention."""
    if len(cleaned) <= TITLE_MAX_CHARS:
        return cleaned or "Slack request"
    return cleaned[: TITLE_MAX_CHARS - 1].rstrip() + "…"


def task_description(*, request: str, requester: str, channel: str, thread_ts: str, context: list[str]) -> str:
    """The task's description: the request, who asked where, and what the thread said before."""
    parts = [request, f"Requested in Slack by @{requester} in #{channel} (thread {thread_ts})."]
    if context:
        parts.append("Earlier in the thread:\n" + "\n".join(context))
    return "\n\n".join(p for p in parts if p)
