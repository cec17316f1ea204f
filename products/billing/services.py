"""Operator-facing changes to quota state: write Redis and the audit log together.

`check_*` validates, `set_*`/`clear_*` change state. The audit row is written in the
same database transaction that wraps the Redis write, so a Redis failure leaves no
audit row claiming a change that did not happen.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from products.accounts.models import Project

from . import quota_limiting as ql
from .models import QuotaLimitChange


class QuotaChangeError(ValueError):
    """The requested change is not valid; the message says why."""


@dataclass(frozen=True)
class Actor:
    """Who is making a change: a user, or a label for commands and jobs."""

    user: object | None = None
    label: str = ""


def check_until(until: datetime) -> datetime:
    if until.tzinfo is None:
        raise QuotaChangeError("The limited-until time must include a timezone.")
    if until <= timezone.now():
        raise QuotaChangeError("The limited-until time must be in the future.")
    return until


def set_quota_limit(
    project: Project,
    resource: ql.QuotaResource,
    until: datetime,
    *,
    reason: str,
    actor: Actor,
    state: str = QuotaLimitChange.State.LIMITED,
) -> QuotaLimitChange:
    """Limit `project` for `resource` until `until`, and record it."""
    check_until(until)
    cache = _cache_for(state)
    with transaction.atomic():
        old = ql.get_limited_until(project.api_token, resource, cache)
        change = _record(project, resource, state, old, until, reason, actor)
        ql.add_limited_tokens(resource, {project.api_token: until}, cache)
    return change


def clear_quota_limit(
    project: Project,
    resource: ql.QuotaResource,
    *,
    reason: str,
    actor: Actor,
    state: str = QuotaLimitChange.State.LIMITED,
) -> QuotaLimitChange:
    """Lift `project`'s limit for `resource`, and record it (even if none was set)."""
    cache = _cache_for(state)
    with transaction.atomic():
        old = ql.get_limited_until(project.api_token, resource, cache)
        change = _record(project, resource, state, old, None, reason, actor)
        ql.remove_limited_tokens(resource, [project.api_token], cache)
    return change


def _cache_for(state: str) -> ql.QuotaLimitingCaches:
    return ql.SUSPENDED if state == QuotaLimitChange.State.SUSPENDED else ql.LIMITS


def _record(project, resource, state, old_score, new_until, reason, actor: Actor) -> QuotaLimitChange:
    return QuotaLimitChange.objects.create(
        project=project,
        resource=ql.QuotaResource(resource).value,
        state=state,
        old_limited_until=ql.to_datetime(old_score),
        new_limited_until=new_until,
        reason=reason,
        actor=actor.user,
        actor_label=actor.label,
    )
