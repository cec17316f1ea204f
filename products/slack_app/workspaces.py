"""A project's Slack workspace: connecting it by hand (operators and `bootstrap_demo`), finding it, and its status.

Status changes (`disable_workspace`, `mark_broken`) are single UPDATEs, so a webhook
and a worker changing the same integration at once never lose each other's write.

The webhook finds a workspace's integration through a small in-process cache
(`cached_target` / `remember_target`), checked on every request against a generation
in Redis (`WORKSPACES_GENERATION_KEY`) read in the same round trip as the quota check.
Every change to an integration announces itself (`announce_workspace_change`: a new
generation, written at once and again after the change commits), so an uninstall, a
revocation or a reinstall is seen by the next mention in every process, not after a
TTL. The TTL (`WORKSPACE_CACHE_SECONDS`) only bounds what a missed announcement (Redis
down at that moment, a change made by hand in SQL) can leave stale.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from posthog_app.redis_client import get_client

from .models import Integration

logger = logging.getLogger(__name__)

# Redis key (a contract): a random value replaced whenever any Slack integration changes.
# Random, not a counter, so a flushed and re-created key can never repeat an old value.
WORKSPACES_GENERATION_KEY = "slack:workspaces:generation"
# How long a cached lookup may be used even when the generation has not moved.
WORKSPACE_CACHE_SECONDS = 10.0
# More distinct workspaces than this in one process: the cache starts over (signed requests only reach it).
WORKSPACE_CACHE_MAX_ENTRIES = 10_000

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


# --- The webhook's cached lookup ---------------------------------------------------------------


@dataclass(frozen=True)
class MentionTarget:
    """What the webhook needs of a workspace's enabled integration: its id and its project's API token (quota key)."""

    integration_id: int
    api_token: str


@dataclass(frozen=True)
class CachedTarget:
    target: MentionTarget | None  # None: no enabled integration (unknown, uninstalled or revoked)
    generation: bytes | None  # WORKSPACES_GENERATION_KEY's value read before the lookup
    expires_at: float


class WorkspaceCache:
    """team id -> CachedTarget, per process, shared by its threads (entries are immutable)."""

    def __init__(self, ttl: float = WORKSPACE_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, CachedTarget] = {}

    def get(self, team_id: str) -> CachedTarget | None:
        """The unexpired entry for `team_id`, if any; the caller still compares its generation."""
        entry = self._entries.get(team_id)
        if entry is None or entry.expires_at <= self.clock():
            return None
        return entry

    def put(self, team_id: str, target: MentionTarget | None, generation: bytes | None) -> None:
        if len(self._entries) >= WORKSPACE_CACHE_MAX_ENTRIES:
            self._entries.clear()
        self._entries[team_id] = CachedTarget(target, generation, self.clock() + self.ttl)

    def clear(self) -> None:
        self._entries.clear()


_cache = WorkspaceCache()


def cached_target(team_id: str) -> CachedTarget | None:
    """This process's unexpired lookup of `team_id`; valid only if its generation is the current one."""
    return _cache.get(team_id)


def load_target(team_id: str) -> MentionTarget | None:
    """Look the workspace's enabled integration up in the database (`find_integration`'s rule, one query)."""
    integration = find_integration(team_id)
    return None if integration is None else MentionTarget(integration.pk, integration.project.api_token)


def remember_target(team_id: str, target: MentionTarget | None, generation: bytes | None) -> None:
    """Cache a lookup made after reading `generation` (read before, so a change during the lookup is seen next time)."""
    _cache.put(team_id, target, generation)


def forget_targets() -> None:
    """Drop this process's cached lookups (Redis unreachable: changes cannot be announced meanwhile)."""
    _cache.clear()


def announce_workspace_change() -> None:
    """Tell every process's webhook cache that some Slack integration changed: now, and again after the commit.

    Now: the next mention anywhere reloads. After the commit: a lookup that read the
    uncommitted past in between is thrown away too. Redis unreachable: logged; caches
    then expire within WORKSPACE_CACHE_SECONDS.
    """
    _cache.clear()
    _new_generation()
    if connection.in_atomic_block:
        transaction.on_commit(_new_generation)


def _new_generation() -> None:
    _cache.clear()
    try:
        get_client().set(WORKSPACES_GENERATION_KEY, uuid.uuid4().hex)
    except Exception as exc:  # noqa: BLE001 - Redis down: the change is saved; caches expire on their own
        logger.warning(
            "could not announce a Slack workspace change in Redis (%s); other processes see it within %ss",
            exc,
            WORKSPACE_CACHE_SECONDS,
        )


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
        announce_workspace_change()
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
        announce_workspace_change()
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
