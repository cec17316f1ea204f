"""The `ai_credits` quota as the gateway sees it: `QuotaResolver`, with two sources.

* `RedisQuotaSource` (`LLM_GATEWAY_QUOTA_SOURCE=redis`, the default): this deployment's
  Redis, through billing's one answer, `is_team_limited`, called off the event loop with
  a short timeout. Redis unreachable (or slower than the timeout): the call is refused
  (fail closed). Unlike the Slack webhook (`QUOTA_CHECK_FAILURE_MODE`, open by default,
  because the workflow's own gate checks again before any work), nothing after the
  gateway checks again before money is spent: the model call is the spending.

* `HttpQuotaSource` (`http`): `GET {LLM_GATEWAY_QUOTA_URL}/api/projects/{id}/quota_limits/`
  of a remote deployment (PostHog's set-up, where the gateway and Django do not share
  Redis), with the caller's own credential, in the header the caller used.
  - "limited" answers are cached for the project (whoever asks) until `limited_until`
    (or `LLM_GATEWAY_QUOTA_CACHE_SECONDS` if it has none): they can only refuse.
  - "not limited" answers are cached for `LLM_GATEWAY_QUOTA_CACHE_SECONDS`, for the
    project AND the credential that got them: a key the endpoint would refuse never
    rides on another key's answer. Concurrent checks of the same project and credential
    share one request.
  - 5xx, 429, timeouts, connection errors and unreadable bodies are retried with
    exponential backoff (`LLM_GATEWAY_QUOTA_RETRIES` more attempts of
    `LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS` each, so a request is held ~2 s at worst), then
    fail OPEN while the endpoint has been failing for less than
    `LLM_GATEWAY_QUOTA_FAIL_OPEN_SECONDS` (60 s) without a break, and CLOSED after that.
    The failure clock is per process (the resolver's) and restarts at the next answer.
  - 401 and 403 (a key without the endpoint's scope: PostHog's wants `project:read`),
    404 and any other 4xx fail CLOSED for that request, and are never cached: the next
    request asks again. A refusal is never read as "not limited".

Every answer is a `QuotaAnswer`: `limited` True means refuse, with the reason and a
retry-after. The clock (`clock`, Unix seconds) and the sleep are injectable, so the
failure window is tested without waiting for it.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

import httpx
from django.conf import settings

from products.billing.facade import QuotaResource, get_quota_status, is_team_limited, queue_team_limited, team_limited_from

logger = logging.getLogger(__name__)

RESOURCE = QuotaResource.AI_CREDITS
UNAVAILABLE_RETRY_AFTER = 10  # seconds, when the quota state cannot be read and the call is refused
CACHE_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class QuotaAnswer:
    """What the quota source says about one request. `limited` True: refuse it.

    `reason`: "ok", "limited", "fail_open" (allowed although unknown), "unavailable"
    (refused: unknown for too long, or Redis down), "refused" (the endpoint refused the
    caller's credential or project).
    """

    limited: bool
    reason: str = "ok"
    retry_after: int = 0
    message: str = ""
    cached: bool = False


OK = QuotaAnswer(False)


class QuotaRequest(Protocol):
    """What a quota source reads from a request (throttles.ThrottleContext has it all)."""

    project_id: int
    project_api_token: str
    credential: str
    extra: dict


class QuotaResolver(Protocol):
    async def check(self, ctx: QuotaRequest) -> QuotaAnswer: ...


@dataclass(frozen=True)
class PipelinedRead:
    """A check split in two, so a caller can run it in one Redis pipeline with others (the throttles do).

    `queue(pipe)` queues `count` commands; `decide(replies)` gets their replies (a reply may
    be an exception: that command failed), or the exception that stopped the whole pipeline.
    """

    queue: Callable[[object], None]
    count: int
    decide: Callable[[list | BaseException], Awaitable]


def _retry_after(until: float | None, now: float, default: int = 60) -> int:
    if until is None:
        return default
    return max(1, math.ceil(until - now))


def _limited_message(until: float | None) -> str:
    when = f" until {datetime.fromtimestamp(until, tz=timezone.utc):%Y-%m-%d %H:%M} UTC" if until else ""
    return f"This project has used its AI credits and is limited{when}. Top up or wait for the next billing period."


# --- redis ------------------------------------------------------------------------------


class RedisQuotaSource:
    """The shared Redis, through billing's `is_team_limited`; unreachable Redis refuses (fail closed)."""

    def __init__(self, *, timeout: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self.clock = clock

    async def check(self, ctx: QuotaRequest) -> QuotaAnswer:
        now = self.clock()
        try:
            # Bounded by the timeout given to the Redis client (connect and reply), so no wait_for is needed.
            limited = await asyncio.to_thread(is_team_limited, ctx.project_api_token, RESOURCE, now, timeout=self.timeout)
        except Exception as exc:  # QuotaStateUnavailable, a timeout, anything: unknown is not "unlimited"
            return self._unavailable(ctx, exc)
        return await self._answer(ctx, limited, now)

    def reads(self, ctx: QuotaRequest) -> PipelinedRead:
        """`check` as one command of a caller's pipeline (billing's `is_team_limited`, in its two halves)."""
        now = self.clock()

        async def decide(replies: list | BaseException) -> QuotaAnswer:
            try:
                if isinstance(replies, BaseException):
                    raise replies
                if isinstance(replies[0], BaseException):
                    raise replies[0]
                limited = team_limited_from(replies[0], now)
            except Exception as exc:
                return self._unavailable(ctx, exc)
            return await self._answer(ctx, limited, now)

        return PipelinedRead(lambda pipe: queue_team_limited(pipe, ctx.project_api_token, RESOURCE), 1, decide)

    @staticmethod
    def _unavailable(ctx: QuotaRequest, exc: BaseException) -> QuotaAnswer:
        logger.error(
            "quota state unreadable (redis) for project %s: %s: %s; refusing the billable call",
            ctx.project_id, type(exc).__name__, exc,
        )
        return QuotaAnswer(
            True, "unavailable", UNAVAILABLE_RETRY_AFTER, "AI credit quota state is temporarily unavailable; try again shortly."
        )

    async def _answer(self, ctx: QuotaRequest, limited: bool, now: float) -> QuotaAnswer:
        if not limited:
            return OK
        until = None
        try:  # only when refusing: when the limit ends, for Retry-After
            status = await asyncio.to_thread(get_quota_status, ctx.project_api_token, now)
            entry = status[RESOURCE].limited_until
            until = entry.timestamp() if entry else None
        except Exception:
            logger.warning("could not read when project %s's limit ends", ctx.project_id, exc_info=True)
        return QuotaAnswer(True, "limited", _retry_after(until, now), _limited_message(until))


# --- http -------------------------------------------------------------------------------


class _Transient(Exception):
    """The endpoint did not give a usable answer this time (5xx, 429, timeout, connection error, bad body)."""


class HttpQuotaSource:
    """A remote deployment's quota endpoint, read with the caller's credential (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        cache_seconds: float = 30.0,
        timeout: float = 0.5,
        retries: int = 2,
        backoff: float = 0.05,
        fail_open_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.fail_open_seconds = fail_open_seconds
        self.clock = clock
        self.sleep = sleep
        self.transport = transport
        self.failing_since: float | None = None
        self._limited: OrderedDict[int, float] = OrderedDict()  # project -> until (cached "limited")
        self._not_limited: OrderedDict[tuple[int, str], float] = OrderedDict()  # (project, credential) -> expires
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> client
        self._inflight: dict[tuple[int, int, str], asyncio.Task] = {}  # (loop, project, credential) -> request

    # The client is pooled per event loop (an httpx client belongs to the loop it was used on).
    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(timeout=self.timeout, transport=self.transport, trust_env=False)
            self._clients[loop] = client
        return client

    def url(self, project_id: int) -> str:
        return f"{self.base_url}/api/projects/{int(project_id)}/quota_limits/"

    @staticmethod
    def _fingerprint(credential: str) -> str:
        return hashlib.sha256(credential.encode()).hexdigest()

    @staticmethod
    def _headers(ctx: QuotaRequest) -> dict[str, str]:
        # The credential goes in the header the caller used (the views say which in ctx.extra).
        if str(ctx.extra.get("credential_header", "")).lower() == "x-api-key":
            return {"X-API-Key": ctx.credential, "Accept": "application/json"}
        return {"Authorization": f"Bearer {ctx.credential}", "Accept": "application/json"}

    def _remember(self, cache: OrderedDict, key, value: float) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_MAX_ENTRIES:
            cache.popitem(last=False)

    def cached(self, ctx: QuotaRequest) -> QuotaAnswer | None:
        now = self.clock()
        until = self._limited.get(ctx.project_id)
        if until is not None:
            if until > now:
                return QuotaAnswer(True, "limited", _retry_after(until, now), _limited_message(until), cached=True)
            del self._limited[ctx.project_id]
        key = (ctx.project_id, self._fingerprint(ctx.credential))
        expires = self._not_limited.get(key)
        if expires is not None:
            if expires > now:
                return QuotaAnswer(False, cached=True)
            del self._not_limited[key]
        return None

    async def check(self, ctx: QuotaRequest) -> QuotaAnswer:
        answer = self.cached(ctx)
        if answer is not None:
            return answer
        # Concurrent checks of one project with one credential share one request (single flight):
        # a burst of calls on a cold cache asks the endpoint once, not once per call.
        loop = asyncio.get_running_loop()
        key = (id(loop), ctx.project_id, self._fingerprint(ctx.credential))
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not loop:  # (a stale entry of a loop that closed mid-request)
            task = loop.create_task(self._ask(ctx))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._inflight.pop(key, None) if self._inflight.get(key) is done else None)
        return await asyncio.shield(task)  # a caller that goes away does not cancel the others' answer

    async def _ask(self, ctx: QuotaRequest) -> QuotaAnswer:
        try:
            response = await self._get_with_retries(ctx)
        except _Transient as exc:
            return self._failed(ctx, str(exc))
        self.failing_since = None  # the endpoint answered: whatever it said, it is up
        now = self.clock()
        if not 200 <= response.status_code < 300:  # 401, 403, 404, any other 4xx, a redirect
            logger.warning(
                "quota endpoint refused project %s's check (HTTP %s: %s); refusing the billable call",
                ctx.project_id, response.status_code, response.text[:200],
            )
            what = {401: "was not accepted", 403: "may not read this project's quota", 404: "cannot see this project"}.get(
                response.status_code, f"was refused (HTTP {response.status_code})"
            )
            return QuotaAnswer(
                True, "refused", UNAVAILABLE_RETRY_AFTER,
                f"The AI credit quota could not be checked: this credential {what} by the quota service.",
            )
        limited, until = self._parse(response)  # a 2xx (a bad body was raised as transient)
        if limited:
            self._remember(self._limited, ctx.project_id, until if until is not None else now + self.cache_seconds)
            return QuotaAnswer(True, "limited", _retry_after(until, now), _limited_message(until))
        self._remember(self._not_limited, (ctx.project_id, self._fingerprint(ctx.credential)), now + self.cache_seconds)
        return OK

    async def _get_with_retries(self, ctx: QuotaRequest) -> httpx.Response:
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                await self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client().get(self.url(ctx.project_id), headers=self._headers(ctx))
            except httpx.HTTPError as exc:  # timeouts, refused connections, protocol errors
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code < 300:
                try:
                    self._parse(response)
                except _Transient as exc:
                    last = str(exc)
                    continue
            return response
        raise _Transient(f"{last} after {self.retries + 1} attempts")

    @staticmethod
    def _parse(response: httpx.Response) -> tuple[bool, float | None]:
        try:
            entry = response.json()["limited"][RESOURCE.value]
            limited = entry["limited"]
            if not isinstance(limited, bool):
                raise TypeError("limited is not a boolean")
            raw = entry.get("limited_until")
            until = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() if raw else None
        except Exception as exc:
            raise _Transient(f"unreadable answer (HTTP {response.status_code}): {type(exc).__name__}: {exc}") from None
        return limited, until

    def _failed(self, ctx: QuotaRequest, why: str) -> QuotaAnswer:
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        failing_for = now - self.failing_since
        if failing_for < self.fail_open_seconds:
            logger.warning(
                "quota endpoint failing for %.0f s (%s); allowing project %s's call (fail open for up to %.0f s)",
                failing_for, why, ctx.project_id, self.fail_open_seconds,
            )
            return QuotaAnswer(False, "fail_open")
        logger.error(
            "quota endpoint failing for %.0f s (%s); refusing project %s's billable call (fail closed)",
            failing_for, why, ctx.project_id,
        )
        return QuotaAnswer(
            True, "unavailable", UNAVAILABLE_RETRY_AFTER, "AI credit quota state is temporarily unavailable; try again shortly."
        )

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()


# --- the process's resolver --------------------------------------------------------------

_resolver: tuple[tuple, QuotaResolver] | None = None


def get_quota_resolver() -> QuotaResolver:
    """Return this process's resolver for the current settings (rebuilt when they change)."""
    global _resolver
    config = (
        settings.LLM_GATEWAY_QUOTA_SOURCE,
        settings.LLM_GATEWAY_QUOTA_URL,
        float(settings.LLM_GATEWAY_QUOTA_CACHE_SECONDS),
        float(settings.LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS),
        int(settings.LLM_GATEWAY_QUOTA_RETRIES),
        float(settings.LLM_GATEWAY_QUOTA_FAIL_OPEN_SECONDS),
    )
    if _resolver is not None and _resolver[0] == config:
        return _resolver[1]
    source, url, cache_seconds, timeout, retries, fail_open = config
    if source == "http":
        if not url:
            raise ValueError("LLM_GATEWAY_QUOTA_SOURCE=http needs LLM_GATEWAY_QUOTA_URL")
        resolver: QuotaResolver = HttpQuotaSource(
            url, cache_seconds=cache_seconds, timeout=timeout, retries=retries, fail_open_seconds=fail_open
        )
    else:
        resolver = RedisQuotaSource(timeout=timeout)
    _resolver = (config, resolver)
    return resolver
