"""A project's Slack workspace: connecting it by hand (operators and `bootstrap_demo`), finding it, and its status.

Status changes (`disable_workspace`, `mark_broken`) are single UPDATEs, so a webhook
and a worker changing the same integration at once never lose each other's write.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from django.utils import timezone

from .models import Integration

logger = logging.getLogger(__name__)

# Slack error codes meaning the bot token will never work again: the integration is
# marked broken (admin, billing page) until an admin installs the app again.
TOKEN_DEAD_ERRORS = frozenset({"invalid_auth", "token_revoked", "account_inactive"})


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
        # A fresh token by hand mends a disabled or broken integration, as a reinstall does.
        integration.status, integration.status_reason = Integration.Status.ACTIVE, ""
    integration.save()
    return integration


def find_integration(team_id: str) -> Integration | None:
    """Return the enabled Slack integration for a workspace (the oldest, if several projects share it).

    A workspace whose app was uninstalled or whose bot token was revoked (`disabled`) has
    none: its mentions and clicks are ignored, with a log line saying why.
    """
    integrations = list(
        Integration.objects.select_related("project").filter(kind=Integration.Kind.SLACK, integration_id=team_id).order_by("id")
    )
    for integration in integrations:
        if integration.enabled:
            return integration
    if integrations:
        logger.warning(
            "ignoring Slack workspace %s: its integration is disabled (%s); an admin must add the app to Slack again",
            team_id,
            integrations[0].status_reason or "uninstalled",
        )
    return None


def disable_workspace(team_id: str, reason: str, *, bot_user_ids: Iterable[str] | None = None) -> int:
    """Disable every integration of workspace `team_id` (only those of `bot_user_ids`, if given); return how many.

    Called for `app_uninstalled` and `tokens_revoked`: Slack will not take the token again,
    so mentions from the workspace are ignored until an admin reinstalls.
    """
    qs = Integration.objects.filter(kind=Integration.Kind.SLACK, integration_id=team_id).exclude(
        status=Integration.Status.DISABLED
    )
    if bot_user_ids is not None:
        bot_user_ids = [b for b in bot_user_ids if b]
        # An integration connected by hand does not know its bot user: a revoked bot token of the workspace is its own.
        qs = qs.filter(bot_user_id__in=[*bot_user_ids, ""])
    count = qs.update(status=Integration.Status.DISABLED, status_reason=reason[:255], status_changed_at=timezone.now())
    if count:
        logger.warning("disabled %d Slack integration(s) of workspace %s: %s", count, team_id, reason)
    return count


def mark_broken(integration_id: int, code: str) -> bool:
    """Mark the integration broken because Slack refused its token with `code`; True if it changed now.

    A disabled integration stays disabled (uninstalling says more than a refused call).
    """
    changed = (
        Integration.objects.filter(pk=integration_id, status=Integration.Status.ACTIVE).update(
            status=Integration.Status.BROKEN,
            status_reason=f"Slack refused the bot token: {code}",
            status_changed_at=timezone.now(),
        )
        > 0
    )
    if changed:
        logger.error("Slack integration #%s is broken: Slack answered %s; an admin must add the app to Slack again", integration_id, code)
    return changed


def broken_integrations(organization_id: int) -> list[Integration]:
    """The organization's integrations that need an admin (broken or disabled), oldest first."""
    return list(
        Integration.objects.select_related("project")
        .filter(project__organization_id=organization_id)
        .exclude(status=Integration.Status.ACTIVE)
        .order_by("id")
    )
