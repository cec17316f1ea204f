"""Operator-facing changes to quota state: write Redis, the audit log and the hold together.

`check_*` validates, `set_*`/`clear_*` change state. The audit row (and, for a limit,
the project's "always limit" override that keeps it) is written in the same database
transaction that wraps the Redis write, so a Redis failure leaves no audit row claiming
a change that did not happen.

A limit set here holds until its time: it is recorded as a time-bound "always limit"
override for the project, which the quota recomputation respects, so the next run
(minutes later) does not lift it. Clearing the limit removes that override too.
Suspensions (the grace-period state) are the recomputation's to manage: one set by
hand is a stop-gap, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from products.accounts.facade import Project

from . import quota_limiting as ql
from .models import QuotaLimitChange, QuotaOverride


class QuotaChangeError(ValueError):
    """The requested change is not valid; the message says why."""


@dataclass(frozen=True)
class Actor:
    """Who is making a change: a user, or a label for commands and jobs."""

    user: object | None = None
    label: str = ""

    def __str__(self) -> str:
        return str(self.user) if self.user is not None else self.label or "unknown"


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
    """Limit `project` for `resource` until `until`, record it, and make it hold until then.

    A limit (not a suspension) is kept by the quota recomputation until `until`: it is
    stored as the project's time-bound "always limit" override, replacing any earlier one.
    """
    check_until(until)
    resource = ql.QuotaResource(resource)
    cache = ql.cache_for_state(state)
    with transaction.atomic():
        old = ql.get_limited_until(project.api_token, resource, cache)
        change = _record(project, resource, state, old, until, reason, actor)
        if state == QuotaLimitChange.State.LIMITED:
            _hold(project, resource, until, reason, actor)
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
    """Lift `project`'s limit for `resource`, drop the hand-set limit that kept it, and record it (even if none was set).

    An organization-wide "always limit" override is not removed here: the next
    recomputation applies it again (see `organization_override`).
    """
    resource = ql.QuotaResource(resource)
    cache = ql.cache_for_state(state)
    with transaction.atomic():
        old = ql.get_limited_until(project.api_token, resource, cache)
        change = _record(project, resource, state, old, None, reason, actor)
        if state == QuotaLimitChange.State.LIMITED:
            QuotaOverride.objects.filter(
                project=project, resource=resource.value, mode=QuotaOverride.Mode.ALWAYS_LIMIT
            ).delete()
        ql.remove_limited_tokens(resource, [project.api_token], cache)
    return change


def organization_override(project: Project, resource: ql.QuotaResource) -> QuotaOverride | None:
    """Return the organization-wide override in force for `resource`, if any (it outranks a clear)."""
    now = timezone.now()
    override = QuotaOverride.objects.filter(
        organization_id=project.organization_id, project__isnull=True, resource=ql.QuotaResource(resource).value
    ).first()
    return override if override is not None and override.applies_at(now) else None


def _hold(project: Project, resource: ql.QuotaResource, until: datetime, reason: str, actor: Actor) -> None:
    QuotaOverride.objects.update_or_create(
        project=project,
        resource=resource.value,
        defaults={
            "organization_id": project.organization_id,
            "mode": QuotaOverride.Mode.ALWAYS_LIMIT,
            "until": until,
            "reason": reason or f"Limit set by hand ({actor}).",
            "created_by": actor.user,
            "created_at": timezone.now(),
        },
    )


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
