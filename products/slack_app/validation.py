"""The shape and length of every Slack field we act on, checked at the door.

Slack's ids are short upper-case tokens and its timestamps `seconds.micros`. A signed
request can still carry anything (a test app, a replay of a tampered export), and a
field that does not fit would fail later, half done: a workflow id over Temporal's
1,000 characters, a task key over 255, a channel over the mapping's 50. So each field is
checked here, and a request with one that does not fit is refused (400) before
anything is started or written.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import MalformedRequest

TEAM_ID = re.compile(r"[A-Z0-9]{2,32}")
EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,62}")
CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{1,49}")
USER_ID = re.compile(r"[UWB][A-Z0-9]{1,49}")
TS = re.compile(r"\d{1,20}\.\d{1,12}")
# The longest workflow id: "posthog-code-mention-" + 32 + ":" + 64 = 118 characters, far
# inside Temporal's 1,000 and the 255 of the task's idempotency key and the mapping.
WORKFLOW_ID = re.compile(r"posthog-code-mention-[A-Z0-9]{2,32}:Ev[A-Za-z0-9]{1,62}")
REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
MAX_TEXT_CHARS = 40_000  # Slack truncates messages at 40,000 characters


def require(name: str, value: Any, pattern: re.Pattern[str]) -> str:
    """Return `value` if it is a string matching `pattern` in full; else raise MalformedRequest naming `name`."""
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"missing {name}")
    if not pattern.fullmatch(value):
        raise MalformedRequest(f"{name} is not a Slack {name.rsplit('.', 1)[-1]} ({len(value)} characters)")
    return value


def optional(name: str, value: Any, pattern: re.Pattern[str]) -> str | None:
    """Like `require`, but a missing (None or "") value is allowed and returned as None."""
    if value is None or value == "":
        return None
    return require(name, value, pattern)


def mention_text(value: Any) -> str:
    """The mention's text: a string of at most 40,000 characters ("" when absent)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedRequest("event.text must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise MalformedRequest(f"event.text is longer than {MAX_TEXT_CHARS} characters")
    return value
