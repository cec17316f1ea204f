"""Quota state in Redis, in PostHog's layout, and the one answer to "is this project limited?".

Layout (a contract shared with PostHog's other readers and writers):

    @posthog/quota-limits/<resource>            sorted set, member = project api_token,
    @posthog/quota-limiting-suspended/<resource>  score = limited-until, Unix seconds

A project is limited for a resource while its score is greater than now. Expired
members are ignored here and swept by the recomputation job.

Nothing here caches in process: a limit set or lifted is seen by the very next
check, by every process. Reads that fail because Redis is unreachable raise
`QuotaStateUnavailable`; each caller decides whether to fail open or closed.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

import redis

from posthog_app.redis_client import get_client


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


# --- Readers -----------------------------------------------------------------------------


def list_limited_tokens(
    resource: QuotaResource, cache: QuotaLimitingCaches = LIMITS, now: float | None = None
) -> dict[str, float]:
    """Return token -> limited-until for every token still limited at `now`."""
    now = _now() if now is None else now
    rows = _call(lambda r: r.zrangebyscore(redis_key(resource, cache), f"({now}", "+inf", withscores=True))
    return {member.decode(): score for member, score in rows}


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


def _call(fn, timeout: float | None = None):
    try:
        return fn(get_client(timeout))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QuotaStateUnavailable(str(exc)) from exc
