"""Which repository a mention is about: pure function, shared by the workflow's activity and tests."""
from __future__ import annotations

import re
from dataclasses import dataclass


def _mentioned_at(text: str, repository: str) -> int | None:
    """Return where `repository` ("owner/name") first appears in `text` as a whole name, else None.

    Matches on its own, inside a GitHub URL (github.com/owner/name/pull/1) and inside
    Slack's <url|label> links; not as part of a longer name (owner/name-two).
    """
    pattern = re.compile(r"(?<![\w.-])" + re.escape(repository) + r"(?![\w-]|\.\w)", re.IGNORECASE)
    match = pattern.search(text)
    return match.start() if match else None


@dataclass(frozen=True)
class RoutingDecision:
    repository: str | None  # the chosen "owner/name", or None (no repository, or ask with the picker)
    needs_picker: bool  # True: ask the user which repository


def route_repository(text: str, repositories: list[str], default: str | None) -> RoutingDecision:
    """Choose the repository for a mention.

    In order: an `owner/name` in the text that is one of the project's repositories
    (case-insensitive, also inside a GitHub URL or Slack's <url|label> link); else the
    only repository; else the default; else ask with the picker. With no repositories at
    all the task is created without one.
    """
    positions = [(pos, repo) for repo in repositories if (pos := _mentioned_at(text or "", repo)) is not None]
    if positions:
        return RoutingDecision(repository=min(positions)[1], needs_picker=False)
    if len(repositories) == 1:
        return RoutingDecision(repository=repositories[0], needs_picker=False)
    if default:
        return RoutingDecision(repository=default, needs_picker=False)
    if not repositories:
        return RoutingDecision(repository=None, needs_picker=False)
    return RoutingDecision(repository=None, needs_picker=True)
