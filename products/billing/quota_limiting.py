"""Quota state in Redis, in PostHog's layout, and the one answer to "is this project limited?".

Layout (a contract shared with PostHog's other readers and writers):

    @posthog/quota-limits/<resource>            sorted set, member = project api_token,
    @posthog/quota-limiting-suspended/<resource>  score = limited-until, Unix seconds

A project is limited for a resource while its score is greater than now. Expired
members are ignored here and swept by the recomputation job.

This module is the only one that knows the key layout and talks to Redis about quota
state: operators' changes (`services`) and the recomputation (`recompute`) call its
public functions.

Nothing here caches in process: a limit set or lifted is seen by the very next
check, by every process. Reads that fail because Redis is unreachable raise
`QuotaStateUnavailable`; each caller decides whether to fail open or closed.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

import redis
from redis.client import Pipeline

from posthog_app.redis_client import get_client

logger = logging.getLogger(__name__)


class QuotaResource(str, Enum):
    EVENTS = "events"
    EXCEPTIONS = "exceptions"
    RECORDINGS = "recordings"
    ROWS_SYNCED = "rows_synced"
    FEATURE_FLAG_REQUESTS = "feature_flag_requests"
    API_QUERIES_READ_BYTES = "api_queries_read_bytes"
    SURVEY_RESPONSES = "survey_responses"
    LLM_EVENTS = "llm_events"
    CDP_TRIGGER_EVENTS = "cdp_trigger_events"
    ROWS_EXPORTED = "rows_exported"
    AI_CREDITS = "ai_credits"

    @classmethod
    def parse(cls, value: "str | QuotaResource") -> "QuotaResource":
        """Return the resource named `value`; raise ValueError listing the valid names."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(r.value for r in cls)
            raise ValueError(f"Unknown resource {value!r}; expected one of: {valid}") from None


class QuotaLimitingCaches(str, Enum):
    """The two sorted-set families; the value is the key prefix."""

    QUOTA_LIMITER_CACHE_KEY = "@posthog/quota-limits/"
    QUOTA_LIMITING_SUSPENDED_KEY = "@posthog/quota-limiting-suspended/"


LIMITS = QuotaLimitingCaches.QUOTA_LIMITER_CACHE_KEY
SUSPENDED = QuotaLimitingCaches.QUOTA_LIMITING_SUSPENDED_KEY

# The audit log's states (`QuotaLimitChange.State`) and the set each one lives in: the one
# place that maps a state to its sorted sets.
STATE_LIMITED = "limited"
STATE_SUSPENDED = "suspended"
_CACHE_FOR_STATE = {STATE_LIMITED: LIMITS, STATE_SUSPENDED: SUSPENDED}
STATES = tuple(_CACHE_FOR_STATE)

# Members per ZADD/ZREM in a bulk write, so no single command carries an unbounded argument list.
WRITE_CHUNK = 5_000


def cache_for_state(state: str) -> QuotaLimitingCaches:
    """Return the sorted-set family that holds `state` ("limited" or "suspended"); ValueError otherwise."""
    try:
        return _CACHE_FOR_STATE[str(state)]
    except KeyError:
        raise ValueError(f"Unknown quota state {state!r}; expected one of: {', '.join(STATES)}") from None


class QuotaStateUnavailable(Exception):
    """Redis could not be reached, so the quota state is unknown (not "unlimited")."""


def redis_key(resource: QuotaResource, cache: QuotaLimitingCaches = LIMITS) -> str:
    return f"{cache.value}{QuotaResource(resource).value}"


def _now() -> float:
    return time.time()


def _to_score(until: datetime | float | int) -> int:
    if isinstance(until, datetime):
        if until.tzinfo is None:
            raise ValueError("limited-until must be timezone-aware")
        return int(until.timestamp())
    return int(until)


def to_datetime(score: float | None) -> datetime | None:
    return None if score is None else datetime.fromtimestamp(score, tz=timezone.utc)


# --- Writers -----------------------------------------------------------------------------


def add_limited_tokens(
    resource: QuotaResource,
    limited_until_by_token: Mapping[str, datetime | float | int],
    cache: QuotaLimitingCaches = LIMITS,
) -> None:
    """Limit (or re-limit) each token until its time; one ZADD."""
    if not limited_until_by_token:
        return
    mapping = {token: _to_score(until) for token, until in limited_until_by_token.items()}
    _call(lambda r: r.zadd(redis_key(resource, cache), mapping))


def remove_limited_tokens(
    resource: QuotaResource, tokens: Iterable[str], cache: QuotaLimitingCaches = LIMITS
) -> None:
    """Lift the limit for each token; one ZREM."""
    tokens = list(tokens)
    if tokens:
        _call(lambda r: r.zrem(redis_key(resource, cache), *tokens))


def replace_limited_tokens(
    resource: QuotaResource,
    limited_until_by_token: Mapping[str, datetime | float | int],
    cache: QuotaLimitingCaches = LIMITS,
) -> None:
    """Make the resource's set exactly `limited_until_by_token`, atomically (MULTI/EXEC).

    Readers never see a half-written set: they see the old one or the new one.
    """
    key = redis_key(resource, cache)
    mapping = {token: _to_score(until) for token, until in limited_until_by_token.items()}

    def run(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=True)
        pipe.delete(key)
        if mapping:
            pipe.zadd(key, mapping)
        pipe.execute()

    _call(run)


@dataclass
class QuotaStateChanges:
    """Writes to apply together: {(resource, state): {token: score}} to add, {(resource, state): [tokens]} to remove."""

    adds: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    removes: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, resource: str, state: str, token: str, score: int) -> None:
        self.adds.setdefault((resource, state), {})[token] = score

    def remove(self, resource: str, state: str, token: str) -> None:
        self.removes.setdefault((resource, state), []).append(token)

    def __bool__(self) -> bool:
        return bool(self.adds or self.removes)


def apply_quota_changes(changes: QuotaStateChanges, *, also: Callable[[Pipeline], None] | None = None) -> None:
    """Apply every add and remove atomically (one MULTI/EXEC round trip), in chunks of `WRITE_CHUNK`.

    `also(pipe)` queues further writes into the same MULTI/EXEC (the recomputation's
    live-credit counters). Readers see the state before or after, never half of it.
    Raises `QuotaStateUnavailable` when Redis is unreachable; nothing is written then.
    """
    if not changes and also is None:
        return

    def run(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=True)
        if also is not None:
            also(pipe)
        for (resource, state), mapping in changes.adds.items():
            key = redis_key(QuotaResource(resource), cache_for_state(state))
            items = list(mapping.items())
            for i in range(0, len(items), WRITE_CHUNK):
                pipe.zadd(key, dict(items[i : i + WRITE_CHUNK]))
        for (resource, state), tokens in changes.removes.items():
            key = redis_key(QuotaResource(resource), cache_for_state(state))
            for i in range(0, len(tokens), WRITE_CHUNK):
                pipe.zrem(key, *tokens[i : i + WRITE_CHUNK])
        pipe.execute()

    _call(run)


# --- Readers -----------------------------------------------------------------------------


def list_limited_tokens(
    resource: QuotaResource, cache: QuotaLimitingCaches = LIMITS, now: float | None = None
) -> dict[str, float]:
    """Return token -> limited-until for every token still limited at `now`."""
    now = _now() if now is None else now
    rows = _call(lambda r: r.zrangebyscore(redis_key(resource, cache), f"({now}", "+inf", withscores=True))
    return {member.decode(): score for member, score in rows}


def read_quota_sets(resources: Iterable[str]) -> dict[tuple[str, str], dict[str, float]]:
    """Return {(resource, state): {token: score}} for whole sets of both states, expired members included.

    One pipelined round trip however many resources (the recomputation's read).
    """
    return read_quota_sets_with(resources, None)[0]


def read_quota_sets_with(
    resources: Iterable[str], also: Callable[[Pipeline], object] | None
) -> tuple[dict[tuple[str, str], dict[str, float]], list]:
    """Like `read_quota_sets`, plus the replies of whatever `also(pipe)` queued, in the same round trip."""
    keys = [(QuotaResource(resource).value, state) for resource in resources for state in STATES]

    def run(r: redis.Redis) -> list:
        pipe = r.pipeline(transaction=False)
        for resource, state in keys:
            pipe.zrangebyscore(redis_key(QuotaResource(resource), cache_for_state(state)), "-inf", "+inf", withscores=True)
        if also is not None:
            also(pipe)
        return pipe.execute()

    results = _call(run)
    sets = {key: {member.decode(): score for member, score in rows} for key, rows in zip(keys, results)}
    return sets, results[len(keys):]


def get_limited_until(
    api_token: str, resource: QuotaResource, cache: QuotaLimitingCaches = LIMITS
) -> float | None:
    """Return the stored score for the token, expired or not (for audit 'old' values)."""
    return _call(lambda r: r.zscore(redis_key(resource, cache), api_token))


def is_team_limited(
    api_token: str, resource: QuotaResource, now: float | None = None, *, timeout: float | None = None
) -> bool:
    """Say whether the project with `api_token` is limited for `resource` right now.

    The single source of truth every gate calls. One ZSCORE, no cache, so a change
    is seen by the next call. Raises `QuotaStateUnavailable` when Redis is down or does
    not answer within `timeout` seconds (default: the shared client's 2 s); the caller
    decides whether that fails open or closed.
    """
    score = _call(lambda r: r.zscore(redis_key(resource, LIMITS), api_token), timeout=timeout)
    return team_limited_from(score, now)


# `is_team_limited` in two halves, for a caller that reads it in a pipeline of its own with other
# keys (the LLM gateway's throttles: one round trip for every check of a call). Same key, same rule.


def queue_team_limited(pipe: Pipeline, api_token: str, resource: QuotaResource) -> None:
    """Queue `is_team_limited`'s one read (a ZSCORE) on `pipe`; give its reply to `team_limited_from`."""
    pipe.zscore(redis_key(resource, LIMITS), api_token)


def team_limited_from(score: float | None, now: float | None = None) -> bool:
    """`is_team_limited`'s answer from its ZSCORE reply: limited while the score is after `now`."""
    return score is not None and score > (_now() if now is None else now)


@dataclass(frozen=True)
class ResourceQuotaStatus:
    resource: QuotaResource
    limited_until: datetime | None
    suspended_until: datetime | None

    @property
    def limited(self) -> bool:
        return self.limited_until is not None


def get_quota_status(api_token: str, now: float | None = None) -> dict[QuotaResource, ResourceQuotaStatus]:
    """Return every resource's current limit and suspension, in one pipelined round trip.

    Expired scores come back as None: they no longer limit anything.
    """
    now = _now() if now is None else now
    resources = list(QuotaResource)

    def run(r: redis.Redis) -> list[float | None]:
        pipe = r.pipeline(transaction=False)
        for resource in resources:
            pipe.zscore(redis_key(resource, LIMITS), api_token)
            pipe.zscore(redis_key(resource, SUSPENDED), api_token)
        return pipe.execute()

    scores = _call(run)
    status = {}
    for i, resource in enumerate(resources):
        limited, suspended = scores[2 * i], scores[2 * i + 1]
        status[resource] = ResourceQuotaStatus(
            resource=resource,
            limited_until=to_datetime(limited) if limited is not None and limited > now else None,
            suspended_until=to_datetime(suspended) if suspended is not None and suspended > now else None,
        )
    return status


@contextmanager
def exclusive_lock(name: str, timeout_seconds: int) -> Iterator[bool]:
    """Hold the Redis lock `name` for the block if nobody else does; yield whether this caller got it.

    The lock frees itself after `timeout_seconds` if its holder dies. Raises
    `QuotaStateUnavailable` when Redis cannot be reached to take it.
    """
    lock = get_client().lock(name, timeout=timeout_seconds, blocking_timeout=0)
    try:
        acquired = lock.acquire(blocking=False)
    except redis.RedisError as exc:
        raise QuotaStateUnavailable(str(exc)) from exc
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except redis.RedisError:  # expired or Redis gone: the timeout frees it
                logger.warning("could not release the Redis lock %s", name, exc_info=True)


def _call(fn, timeout: float | None = None):
    try:
        return fn(get_client(timeout))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QuotaStateUnavailable(str(exc)) from exc
