"""Live AI-credit counters: each organization's credits used this period, counted as calls happen.

Layout (a contract: the LLM gateway increments and reads it, the recomputation resets it):

    @posthog/ai-credits-live/<organization_id>    hash
        used        credits used this period (integer): the period's billable credits in the
                    database at the last recomputation, plus every call recorded since
        limit       allowance + overage buffer: usage at which the organization is limited
                    (absent: no limit, e.g. no plan, an unlimited allowance, or "never limit")
        period_end  Unix seconds; once it has passed the counter is stale and limits nothing
                    until the recomputation resets it for the new period
        exempt      comma-separated project ids with a "never limit" override in force (absent: none)

The gateway adds each recorded call's credits (`add_live_credits`, one HINCRBY) and reads
the hash before each billable call (`live_credits`, one HGETALL), so an organization is
refused as soon as its usage reaches the limit, not at the next recomputation.

The recomputation (`recompute.py`) stays the source of truth. In the Redis read it
already makes, before it sums usage in the database, it snapshots every counter
(`queue_snapshot`); in its one MULTI/EXEC write it moves `used` by (database total -
snapshot) with HINCRBY (`queue_changes`). The counter therefore becomes the database
figure plus whatever the gateway added after the snapshot: calls recorded while the
run was summing are not lost. Only differences are written, so a run where nothing
changed writes nothing. A call whose usage row and increment straddle the snapshot is
counted twice (or not at all) until the next run: bounded by the calls in flight.

Reads and writes that cannot reach Redis raise `QuotaStateUnavailable`.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from posthog_app.redis_client import get_client

from .quota_limiting import QuotaStateUnavailable

KEY_PREFIX = "@posthog/ai-credits-live/"
# A counter nobody touches any more (a deleted organization) disappears this long after its period ends.
EXPIRE_AFTER_PERIOD_SECONDS = 40 * 86400

F_USED, F_LIMIT, F_PERIOD_END, F_EXEMPT = "used", "limit", "period_end", "exempt"


def live_key(organization_id: int) -> str:
    return f"{KEY_PREFIX}{int(organization_id)}"


@dataclass(frozen=True)
class LiveCredits:
    """One organization's live counter. `limit` None: nothing to enforce; `period_end` None: never reset yet."""

    used: int = 0
    limit: int | None = None
    period_end: float | None = None
    exempt_projects: frozenset[int] = frozenset()

    def exceeded(self, project_id: int | None = None, now: float | None = None) -> bool:
        """Say whether usage has reached the limit in a current period (an exempt project never is)."""
        now = time.time() if now is None else now
        if self.limit is None or self.period_end is None or self.period_end <= now:
            return False
        if project_id is not None and project_id in self.exempt_projects:
            return False
        return self.used >= self.limit


def _parse(raw: dict) -> LiveCredits:
    values = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
    exempt = values.get(F_EXEMPT) or ""
    return LiveCredits(
        used=int(values.get(F_USED) or 0),
        limit=int(values[F_LIMIT]) if values.get(F_LIMIT) not in (None, "") else None,
        period_end=float(values[F_PERIOD_END]) if values.get(F_PERIOD_END) not in (None, "") else None,
        exempt_projects=frozenset(int(p) for p in exempt.split(",") if p),
    )


def _call(fn, timeout: float | None):
    try:
        return fn(get_client(timeout))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QuotaStateUnavailable(str(exc)) from exc


# --- the gateway's side ------------------------------------------------------------------


def add_live_credits(organization_id: int, credits: int, *, timeout: float | None = None) -> int:
    """Add `credits` to the organization's counter (one HINCRBY); return the new `used`.

    Zero or negative credits are not written. Raises `QuotaStateUnavailable` when Redis
    is unreachable (or slower than `timeout` seconds).
    """
    credits = int(credits)
    if credits <= 0:
        return 0
    return int(_call(lambda r: queue_add_live_credits(r, organization_id, credits), timeout))


def queue_add_live_credits(pipe, organization_id: int, credits: int):
    """Queue `add_live_credits`'s one write (an HINCRBY) on `pipe` (a caller's own pipeline, or a client)."""
    return pipe.hincrby(live_key(organization_id), F_USED, int(credits))


def live_credits(organization_id: int, *, timeout: float | None = None) -> LiveCredits:
    """Return the organization's live counter (one HGETALL); an organization never counted reads as empty."""
    return live_credits_from(_call(lambda r: r.hgetall(live_key(organization_id)), timeout))


def queue_live_credits(pipe, organization_id: int) -> None:
    """Queue `live_credits`'s one read (an HGETALL) on `pipe`; give its reply to `live_credits_from`."""
    pipe.hgetall(live_key(organization_id))


def live_credits_from(reply: dict | None) -> LiveCredits:
    """The counter from its HGETALL reply (`live_credits` in a caller's own pipeline)."""
    return _parse(reply or {})


# --- the recomputation's side ------------------------------------------------------------


def queue_snapshot(pipe, organization_ids: Iterable[int]) -> list[int]:
    """Queue one HGETALL per organization on `pipe`; return the ids in reply order (for `parse_snapshot`)."""
    ids = list(organization_ids)
    for org_id in ids:
        pipe.hgetall(live_key(org_id))
    return ids


def parse_snapshot(organization_ids: list[int], replies: list) -> dict[int, LiveCredits]:
    return {org_id: _parse(raw or {}) for org_id, raw in zip(organization_ids, replies)}


@dataclass(frozen=True)
class LiveTarget:
    """What one organization's counter should say after a recomputation."""

    used: int
    limit: int | None
    period_end: int
    exempt_projects: frozenset[int] = frozenset()


@dataclass
class LiveCreditChanges:
    """Counter writes for one MULTI/EXEC: {organization_id: (HINCRBY delta, fields to set or None, fields to delete)}."""

    writes: dict[int, tuple[int, dict[str, str] | None, list[str]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.writes)

    def __len__(self) -> int:
        return len(self.writes)


def diff(targets: dict[int, LiveTarget], snapshot: dict[int, LiveCredits]) -> LiveCreditChanges:
    """Return the writes that bring each snapshotted counter to its target; nothing for one already there."""
    changes = LiveCreditChanges()
    for org_id, target in targets.items():
        seen = snapshot.get(org_id, LiveCredits())
        delta = target.used - seen.used
        same_terms = (
            seen.limit == target.limit
            and seen.period_end is not None
            and int(seen.period_end) == target.period_end
            and seen.exempt_projects == target.exempt_projects
        )
        if delta == 0 and same_terms:
            continue
        to_set = None
        to_delete: list[str] = []
        if not same_terms:
            to_set = {F_PERIOD_END: str(target.period_end)}
            if target.limit is None:
                to_delete.append(F_LIMIT)
            else:
                to_set[F_LIMIT] = str(target.limit)
            if target.exempt_projects:
                to_set[F_EXEMPT] = ",".join(str(p) for p in sorted(target.exempt_projects))
            else:
                to_delete.append(F_EXEMPT)
        changes.writes[org_id] = (delta, to_set, to_delete)
    return changes


def queue_changes(pipe, changes: LiveCreditChanges) -> None:
    """Queue the counter writes on `pipe` (the recomputation's MULTI/EXEC)."""
    for org_id, (delta, to_set, to_delete) in changes.writes.items():
        key = live_key(org_id)
        # HINCRBY even by 0 creates the field, so a counter always has `used`.
        pipe.hincrby(key, F_USED, delta)
        if to_set is not None:
            pipe.hset(key, mapping=to_set)
            if to_delete:
                pipe.hdel(key, *to_delete)
            pipe.expireat(key, int(to_set[F_PERIOD_END]) + EXPIRE_AFTER_PERIOD_SECONDS)
