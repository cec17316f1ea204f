"""Turn metered usage into quota limits: `update_all_orgs_billing_quotas()`.

Run by Celery beat (minutes 10, 25, 40 and 55) and by `manage.py update_quota_limits`.
The cost does not grow in queries or Redis round trips with the number of
organizations:

* five queries load every organization's plan, allowances, overrides and projects
  (`plans.load_org_terms`), one query sums usage per organization over its own period
  (`usage.billable_usage_by_org`);
* one pipelined round trip reads the current sorted sets of the managed resources and
  snapshots every organization's live AI-credit counter (`live_credits.py`), before the
  usage is summed;
* the decision for each organization is made in Python, and only the differences are
  written: one MULTI/EXEC pipeline to Redis (sorted sets and live counters) and batched
  INSERTs into the audit log, in one database transaction (a Redis failure rolls the
  audit rows back).

The live counters (`@posthog/ai-credits-live/<organization_id>`), which the LLM gateway
increments per call and reads before each billable call, are reset from the database
on every run: used = the period's billable credits (plus what the gateway added since
the snapshot), limit = allowance + overage buffer (none without an allowance or under a
"never limit" override), period end. An organization whose decision failed keeps its
counter as it was.

A failure while deciding one organization leaves its Redis state untouched (it is
never silently unlimited) and is reported in the summary and the log.

`ai_credits` is managed for every organization. Another resource is managed for an
organization only when its plan has an allowance for it (`llm_events` is metered too:
the number of billable events) or an organization-wide operator override names it.
Other limits (set by PostHog, or by hand on another resource) are never touched, except
that expired members are swept from the sets read. Removing an "always limit" override
on an unmetered resource leaves that limit to run out at the period end (or to be
lifted by hand).

Overrides are respected while they are in force (no `until`, or `until` still ahead) and
ignored once they end. A single-project override beats its organization's decision for
that project: a limit set by hand (`quota_limits set`, the admin action) is such an
"always limit" until its time, so it holds until then; if the figures limit the project
for longer, the longer limit wins.

Redis is reached only through `quota_limiting`'s public functions (one read, one
MULTI/EXEC write, the run's lock), into whose pipelines `live_credits` queues the
counters' snapshot and writes.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import connection, transaction
from django.utils import timezone

from . import live_credits as live
from . import quota_limiting as ql
from .alerts import send_usage_alerts
from .signals import SENDER as SIGNAL_SENDER
from .signals import quota_recomputed
from .models import BillingPlan, QuotaLimitChange, QuotaOverride
from .plans import OrgTerms, ProjectOverride, load_org_terms
from .usage import METERED_RESOURCES, billable_usage_by_org

logger = logging.getLogger(__name__)

ACTOR_LABEL = "update_quota_limits"
LOCK_KEY = "billing:update-quota-limits:lock"
LOCK_TIMEOUT_SECONDS = 15 * 60
AUDIT_BATCH = 5_000

# Every organization's AI credits are managed here; other resources only where the plan
# has an allowance for them or an operator override names them.
ALWAYS_MANAGED = ql.QuotaResource.AI_CREDITS.value

STATE_LIMITED = ql.STATE_LIMITED
STATE_SUSPENDED = ql.STATE_SUSPENDED


class InvalidPlan(ValueError):
    """The organization's plan holds data that cannot be applied; its state is left as it was."""


class RecomputeAlreadyRunning(RuntimeError):
    """Another recomputation holds the lock; this one did nothing."""


@dataclass(frozen=True)
class TokenChange:
    """One write to one sorted set for one project (new_score None = removed)."""

    organization_id: int
    project_id: int | None
    api_token: str
    resource: str
    state: str
    old_score: float | None
    new_score: int | None
    reason: str


@dataclass(frozen=True)
class OrgFailure:
    organization_id: int
    error: str


@dataclass
class RecomputeSummary:
    """What one run found and did.

    Organization counts add up: checked = newly_limited + lifted + unchanged + failed.
    "Newly limited" includes organizations that just entered a grace period
    (suspended); an organization whose limit was only moved (e.g. to a new period
    end) is "unchanged" although its projects' scores were rewritten and audited.
    """

    checked: int = 0
    newly_limited: int = 0
    lifted: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[OrgFailure] = field(default_factory=list)
    changes: list[TokenChange] = field(default_factory=list)
    swept: int = 0
    periods_rolled: int = 0
    live_counters_written: int = 0
    alerts: list = field(default_factory=list)
    dry_run: bool = False
    duration_seconds: float = 0.0
    # What the decisions were made from, handed on to the alerts (not part of the report).
    terms: dict = field(default_factory=dict, repr=False)
    usage: dict = field(default_factory=dict, repr=False)

    def as_rows(self) -> list[tuple[str, int]]:
        return [
            ("organizations checked", self.checked),
            ("newly limited", self.newly_limited),
            ("lifted", self.lifted),
            ("unchanged", self.unchanged),
            ("failed", self.failed),
            ("project limit changes", len(self.changes)),
            ("expired entries swept", self.swept),
            ("billing periods rolled over", self.periods_rolled),
            ("live credit counters reset", self.live_counters_written),
            ("usage alerts", len(self.alerts)),
        ]


@dataclass(frozen=True)
class Decision:
    """What one organization's projects should look like for one resource."""

    state: str | None  # STATE_LIMITED, STATE_SUSPENDED or None (not limited)
    until: int | None
    reason: str


# --- reading -----------------------------------------------------------------------------


def read_quota_state(resources: Iterable[str]) -> dict[tuple[str, str], dict[str, float]]:
    """Return {(resource, state): {token: score}} for whole sets, expired members included; one round trip."""
    return ql.read_quota_sets(resources)


def read_quota_state_and_counters(
    resources: Iterable[str], organization_ids: Iterable[int]
) -> tuple[dict[tuple[str, str], dict[str, float]], dict[int, live.LiveCredits]]:
    """Read the sorted sets and snapshot the organizations' live counters, in one round trip."""
    order: list[int] = []

    def snapshot(pipe) -> None:
        order.extend(live.queue_snapshot(pipe, organization_ids))

    sets, replies = ql.read_quota_sets_with(resources, snapshot)
    return sets, live.parse_snapshot(order, replies)


def live_target(terms: OrgTerms, usage: dict[str, int]) -> live.LiveTarget:
    """What one organization's live AI-credit counter should say: the figures the recomputation decided from."""
    resource = ALWAYS_MANAGED
    allowance = terms.allowances.get(resource)
    limit = None
    if allowance is not None and not allowance.unlimited and terms.overrides.get(resource) != QuotaOverride.Mode.NEVER_LIMIT:
        limit = allowance.allowance + allowance.overage_buffer
    exempt = frozenset(
        project_id
        for project_id, override in terms.project_overrides.get(resource, {}).items()
        if override.mode == QuotaOverride.Mode.NEVER_LIMIT
    )
    return live.LiveTarget(
        used=int(usage.get(resource, 0)), limit=limit, period_end=int(terms.period_end.timestamp()), exempt_projects=exempt
    )


# --- deciding ----------------------------------------------------------------------------


def _fmt_period(terms: OrgTerms) -> str:
    return f"{terms.period_start:%Y-%m-%d %H:%M}–{terms.period_end:%Y-%m-%d %H:%M} UTC"


def _fmt_time(moment: datetime) -> str:
    return f"{moment.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC"


def decide_resource(
    terms: OrgTerms, resource: str, usage: int, current: dict[tuple[str, str], dict[str, float]], now_ts: float
) -> Decision:
    """Decide one organization's state for one resource: its figures, then any organization-wide override."""
    figures = decide_from_figures(terms, resource, usage, current, now_ts)
    mode = terms.overrides.get(resource)
    if mode is None:
        return figures
    until = terms.override_until.get(resource)
    until_text = f" until {_fmt_time(until)}" if until else ""
    label = QuotaOverride.Mode(mode).label
    reason = f"Operator override '{label}'{until_text} ({resource} usage {usage:,}, period {_fmt_period(terms)})."
    return apply_override(mode, until, figures, terms, reason)


def decide_from_figures(
    terms: OrgTerms, resource: str, usage: int, current: dict[tuple[str, str], dict[str, float]], now_ts: float
) -> Decision:
    """Decide from usage against the allowance alone (overrides aside), with the grace period if any."""
    period_end = int(terms.period_end.timestamp())
    period = _fmt_period(terms)
    allowance = terms.allowances.get(resource)
    if allowance is None or allowance.unlimited:
        return Decision(None, None, f"No {resource} allowance (unlimited); usage {usage:,}, period {period}.")
    threshold = allowance.allowance + allowance.overage_buffer
    figures = (
        f"{resource} usage {usage:,} vs allowance {allowance.allowance:,} + overage buffer "
        f"{allowance.overage_buffer:,} in period {period}"
    )
    if usage < threshold:
        return Decision(None, None, f"Under the allowance: {figures}.")
    if not allowance.grace_period_days:
        return Decision(STATE_LIMITED, period_end, f"Over the allowance: {figures}; limited until the period ends.")

    # With a grace period: suspended first, limited once the grace has run out. Projects
    # limited by an override of their own say nothing about the organization's grace.
    own = terms.project_overrides.get(resource, {})
    tokens = [token for project_id, token in terms.project_tokens if project_id not in own]
    limited = current.get((resource, STATE_LIMITED), {})
    suspended = current.get((resource, STATE_SUSPENDED), {})
    if any(limited.get(t, 0) > now_ts for t in tokens):
        return Decision(STATE_LIMITED, period_end, f"Over the allowance, grace period over: {figures}.")
    grace_ends = [suspended[t] for t in tokens if t in suspended]
    if grace_ends:
        grace_end = max(grace_ends)
        if grace_end > now_ts:
            return Decision(STATE_SUSPENDED, int(grace_end), f"Over the allowance, in the grace period: {figures}.")
        return Decision(
            STATE_LIMITED, period_end, f"Over the allowance and the {allowance.grace_period_days}-day grace period has ended: {figures}."
        )
    grace_end = min(int(now_ts + timedelta(days=allowance.grace_period_days).total_seconds()), period_end)
    return Decision(
        STATE_SUSPENDED, grace_end, f"Over the allowance: {figures}; {allowance.grace_period_days}-day grace period starts."
    )


def apply_override(mode: str, until: datetime | None, beneath: Decision | None, terms: OrgTerms, reason: str) -> Decision:
    """Apply an override in force on top of the decision it overrides (None: a resource nobody manages here).

    "never limit" lifts. "always limit" limits until `until` (none: the period end),
    unless the decision beneath already limits for longer: an operator's limit never
    shortens one the figures impose.
    """
    if mode == QuotaOverride.Mode.NEVER_LIMIT:
        return Decision(None, None, reason)
    limit_until = int(until.timestamp()) if until else int(terms.period_end.timestamp())
    if beneath is not None and beneath.state == STATE_LIMITED and (beneath.until or 0) > limit_until:
        return beneath
    return Decision(STATE_LIMITED, limit_until, reason)


def decide_for_project(override: ProjectOverride, org_decision: Decision | None, terms: OrgTerms) -> Decision:
    """Apply a single project's override on top of its organization's decision (None: not managed)."""
    until_text = f" until {_fmt_time(override.until)}" if override.until else ""
    if override.mode == QuotaOverride.Mode.ALWAYS_LIMIT:
        held = f"until {_fmt_time(override.until)}" if override.until else "until the period ends"
        reason = f"Limit set by hand, held {held} (operator override 'always limit' for this project)."
    else:
        reason = f"Operator override 'never limit' for this project{until_text}."
    return apply_override(override.mode, override.until, org_decision, terms, reason)


def changes_for_org(
    terms: OrgTerms,
    usage: dict[str, int],
    resources: Iterable[str],
    current: dict[tuple[str, str], dict[str, float]],
    now_ts: float,
) -> list[TokenChange]:
    """Return the writes that bring one organization's projects to their decided state.

    Raises `InvalidPlan` when the plan cannot be applied; the caller then leaves the
    organization as it is.
    """
    if terms.invalid:
        raise InvalidPlan("; ".join(terms.invalid))
    if terms.period_end <= terms.period_start:
        raise InvalidPlan(f"billing period ends before it starts ({_fmt_period(terms)})")
    changes: list[TokenChange] = []
    for resource in resources:
        own = terms.project_overrides.get(resource, {})
        managed = resource == ALWAYS_MANAGED or resource in terms.allowances or resource in terms.overrides
        if not managed and not own:
            continue  # this organization's plan says nothing about it: someone else's limit, left alone
        org_decision = decide_resource(terms, resource, usage.get(resource, 0), current, now_ts) if managed else None
        for project_id, token in terms.project_tokens:
            override = own.get(project_id)
            if override is not None:
                decision = decide_for_project(override, org_decision, terms)
            elif org_decision is not None:
                decision = org_decision
            else:
                continue  # an unmanaged resource: only the projects with overrides are this job's
            for state in (STATE_LIMITED, STATE_SUSPENDED):
                want = decision.until if decision.state == state else None
                have = current.get((resource, state), {}).get(token)
                if want is None:
                    if have is None or have <= now_ts:
                        continue  # nothing to lift (an expired entry is left to the sweep)
                elif have is not None and int(have) == want:
                    continue
                changes.append(
                    TokenChange(terms.organization_id, project_id, token, resource, state, have, want, decision.reason)
                )
    return changes


def _is_live(score: float | None, now_ts: float) -> bool:
    return score is not None and score > now_ts


# --- the run -----------------------------------------------------------------------------


def update_all_orgs_billing_quotas(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    send_alerts: bool = True,
) -> RecomputeSummary:
    """Recompute every organization's quota state from its usage, and write what changed.

    `dry_run` reads and decides but writes nothing (no Redis, no audit, no period
    roll-over, no alerts). `progress(n)` is called as organizations are processed and
    `on_start(total)` once before. Raises `RecomputeAlreadyRunning` if another run
    holds the lock, `QuotaStateUnavailable` if Redis is down (nothing is written then).
    """
    started = time.monotonic()
    now = now or timezone.now()
    now_ts = now.timestamp()
    if dry_run:
        summary = _run(now, now_ts, dry_run, progress, on_start)
    else:
        with ql.exclusive_lock(LOCK_KEY, LOCK_TIMEOUT_SECONDS) as acquired:
            if not acquired:
                raise RecomputeAlreadyRunning("Another quota recomputation is running.")
            summary = _run(now, now_ts, dry_run, progress, on_start)

    if send_alerts:
        summary.alerts = send_usage_alerts(summary.terms, summary.usage, now, dry_run=dry_run)
    if not dry_run:
        _announce_recomputed(summary)
    summary.duration_seconds = time.monotonic() - started
    logger.info(
        "quota recomputation%s: checked=%d newly_limited=%d lifted=%d unchanged=%d failed=%d changes=%d swept=%d "
        "periods_rolled=%d alerts=%d in %.2fs",
        " (dry run)" if dry_run else "",
        summary.checked, summary.newly_limited, summary.lifted, summary.unchanged, summary.failed,
        len(summary.changes), summary.swept, summary.periods_rolled, len(summary.alerts), summary.duration_seconds,
    )
    return summary


def _announce_recomputed(summary: RecomputeSummary) -> None:
    """Send `quota_recomputed` for the organizations checked (the Slack app refreshes their Home tabs)."""
    for receiver, result in quota_recomputed.send_robust(sender=SIGNAL_SENDER, organization_ids=sorted(summary.terms)):
        if isinstance(result, Exception):
            logger.error("a quota_recomputed receiver (%s) failed: %r", receiver, result)


def _run(now, now_ts, dry_run, progress, on_start) -> RecomputeSummary:
    terms = load_org_terms(now)
    resources = list(METERED_RESOURCES)
    for t in terms.values():
        for resource in [*t.overrides, *t.project_overrides]:
            if resource not in resources:
                resources.append(resource)
    # Before the usage is summed: a call the gateway counts after this snapshot stays counted.
    current, counters = read_quota_state_and_counters(resources, list(terms))
    usage = billable_usage_by_org({org_id: (t.period_start, t.period_end) for org_id, t in terms.items()})

    summary = RecomputeSummary(dry_run=dry_run, terms=terms, usage=usage)
    if on_start:
        on_start(len(terms))
    failed_tokens: set[str] = set()
    live_targets: dict[int, live.LiveTarget] = {}
    for org_id, org_terms in terms.items():
        tokens = [token for _, token in org_terms.project_tokens]
        summary.checked += 1
        try:
            changes = changes_for_org(org_terms, usage.get(org_id, {}), resources, current, now_ts)
        except Exception as exc:
            summary.failed += 1
            summary.failures.append(OrgFailure(org_id, f"{type(exc).__name__}: {exc}"))
            failed_tokens.update(tokens)
            logger.exception("quota recomputation failed for organization %s; its state is left as it was", org_id)
        else:
            newly = any(c.new_score is not None and not _is_live(c.old_score, now_ts) for c in changes)
            lifted = any(c.new_score is None and _is_live(c.old_score, now_ts) for c in changes)
            if newly:
                summary.newly_limited += 1
            elif lifted:
                summary.lifted += 1
            else:
                summary.unchanged += 1
            summary.changes.extend(changes)
            live_targets[org_id] = live_target(org_terms, usage.get(org_id, {}))
        if progress:
            progress(1)

    # Expired members nobody decided about (deleted projects, other writers) are swept;
    # members of organizations that failed are left exactly as they were.
    sweeps: list[tuple[str, str, str]] = []
    changed = {(c.resource, c.state, c.api_token) for c in summary.changes}
    for (resource, state), scores in current.items():
        for token, score in scores.items():
            if score <= now_ts and token not in failed_tokens and (resource, state, token) not in changed:
                sweeps.append((resource, state, token))
    summary.swept = len(sweeps)

    failed_orgs = {f.organization_id for f in summary.failures}
    rolled = [
        t for t in terms.values() if t.plan_id is not None and t.rolled_from is not None and t.organization_id not in failed_orgs
    ]
    summary.periods_rolled = len(rolled)
    live_changes = live.diff(live_targets, counters)
    summary.live_counters_written = len(live_changes)
    if not dry_run:
        _write(summary.changes, sweeps, rolled, live_changes)
    return summary


def _write(
    changes: list[TokenChange],
    sweeps: list[tuple[str, str, str]],
    rolled: list[OrgTerms],
    live_changes: live.LiveCreditChanges | None = None,
) -> None:
    """Write the audit rows, the Redis differences (sorted sets and live counters) and the rolled periods; all or nothing."""
    if not changes and not sweeps and not rolled and not live_changes:
        return
    redis_changes = ql.QuotaStateChanges()
    for c in changes:
        if c.new_score is None:
            redis_changes.remove(c.resource, c.state, c.api_token)
        else:
            redis_changes.add(c.resource, c.state, c.api_token, c.new_score)
    for resource, state, token in sweeps:
        redis_changes.remove(resource, state, token)

    with transaction.atomic():
        _roll_periods(rolled)
        _insert_audit_rows([c for c in changes if c.project_id is not None])
        # Last inside the transaction: if Redis refuses, the audit rows and period roll-over roll back.
        ql.apply_quota_changes(
            redis_changes, also=(lambda pipe: live.queue_changes(pipe, live_changes)) if live_changes else None
        )


def _roll_periods(rolled: list[OrgTerms]) -> None:
    """Move ended periods on, stamping `updated_at`; one UPDATE ... FROM unnest on PostgreSQL, however many."""
    if not rolled:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        # bulk_update skips auto_now, so updated_at is set here, as the PostgreSQL path does.
        plans = [
            BillingPlan(pk=t.plan_id, period_start=t.period_start, period_end=t.period_end, updated_at=now)
            for t in rolled
        ]
        BillingPlan.objects.bulk_update(plans, ["period_start", "period_end", "updated_at"], batch_size=500)
        return
    table = BillingPlan._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS p SET period_start = v.period_start, period_end = v.period_end, updated_at = %s
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, period_start, period_end)
            WHERE p.id = v.id
            """,
            [now, [t.plan_id for t in rolled], [t.period_start for t in rolled], [t.period_end for t in rolled]],
        )


def _insert_audit_rows(changes: list[TokenChange]) -> None:
    """Record every change in the audit log; one INSERT ... SELECT FROM unnest on PostgreSQL."""
    if not changes:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        QuotaLimitChange.objects.bulk_create(
            [
                QuotaLimitChange(
                    project_id=c.project_id,
                    resource=c.resource,
                    state=c.state,
                    old_limited_until=ql.to_datetime(c.old_score),
                    new_limited_until=ql.to_datetime(c.new_score),
                    reason=c.reason,
                    actor_label=ACTOR_LABEL,
                    created_at=now,
                )
                for c in changes
            ],
            batch_size=AUDIT_BATCH,
        )
        return
    table = QuotaLimitChange._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table}
                (project_id, resource, state, old_limited_until, new_limited_until, reason, actor_label, created_at)
            SELECT project_id, resource, state, old_until, new_until, reason, %s, %s
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[])
                 AS c(project_id, resource, state, old_until, new_until, reason)
            """,
            [
                ACTOR_LABEL,
                now,
                [c.project_id for c in changes],
                [c.resource for c in changes],
                [c.state for c in changes],
                [ql.to_datetime(c.old_score) for c in changes],
                [ql.to_datetime(c.new_score) for c in changes],
                [c.reason for c in changes],
            ],
        )
