"""Connecting a project to a Slack workspace by hand (operators and `bootstrap_demo`)."""
from __future__ import annotations

from .models import Integration


class InvalidWorkspaceSettings(ValueError):
    """The workspace settings cannot be applied; the message says which and why."""


def connect_workspace(
    project, *, team_id: str, bot_token: str | None = None, repositories: list[str] | None = None
) -> Integration:
    """Create or update `project`'s Slack integration for workspace `team_id` and return it.

    `repositories` ("owner/name"), when given, replaces the list (a default repository no
    longer in it is dropped); `bot_token`, when given, is stored encrypted. Raises
    `InvalidWorkspaceSettings` before writing anything.
    """
    if not team_id or not team_id.strip():
        raise InvalidWorkspaceSettings("a Slack team id (T...) is required")
    repositories = list(dict.fromkeys(repositories or []))
    bad = [r for r in repositories if r.count("/") != 1 or not all(part.strip() for part in r.split("/"))]
    if bad:
        raise InvalidWorkspaceSettings(f"repositories must be owner/name, got: {', '.join(bad)}")
    integration, _ = Integration.objects.get_or_create(project=project, kind=Integration.Kind.SLACK, integration_id=team_id)
    config = {"repositories": [], "default_repository": None, "alerts_channel": None, **(integration.config or {})}
    if repositories:
        config["repositories"] = repositories
        if config.get("default_repository") not in repositories:
            config["default_repository"] = None
    integration.config = config
    if bot_token:
        integration.set_bot_token(bot_token)
    integration.save()
    return integration


def find_integration(team_id: str) -> Integration | None:
    """Return the Slack integration for a workspace (the oldest, if several projects share it)."""
    return (
        Integration.objects.select_related("project")
        .filter(kind=Integration.Kind.SLACK, integration_id=team_id)
        .order_by("id")
        .first()
    )
