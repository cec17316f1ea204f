"""Throttles: who may spend right now. Each is a small class with a `scope` and one async check.

The gateway's views build one `ThrottleContext` per request and call `check_throttles`;
the chain runs concurrently and the first denial in list order wins (a denial is data:
logged, counted in `DENIALS` and rendered as a 429 with `Retry-After`, never raised).
After calls have been metered, `record_spends` tells the throttles that count spend.

The chain, in order:

1. `AICreditsThrottle` ("ai_credits", billable products only): the project's `ai_credits`
   quota through the `QuotaResolver` (quota.py: the shared Redis, or a remote quota
   endpoint with the caller's credential). Unknown quota state refuses (see quota.py for
   the http source's 60 s of fail-open).
2. `LiveCreditsThrottle` ("live_credits", billable products only): the organization's live
   counter (billing's `live_credits`), which every recorded call moves at once, so usage
   reaching allowance + buffer refuses the next call, not the next recomputation.
3. `ProductCostThrottle` ("product_cost", every product): USD spent by all callers of the
   product over its window (cost_limits.py).
4. `UserCostThrottle` ("user_cost", every product): USD spent by one user of the product,
   burst window then sustained window.

All the Redis reads of the chain go in ONE pipelined round trip, on the event loop itself
(redis.asyncio: no worker thread, so no wait for the GIL behind the process's other
threads) (`check_throttles`): each throttle queues its commands (`reads`) and judges their
replies; a throttle that cannot (an http quota source, a stand-in) runs its own `check`
alongside. Each throttle's `check` alone is the same, in a pipeline of its own. Counting
spend after a call (`record_spend`) is one pipelined round trip on the loop too.

The credit check that refuses on unknown state is the first one. The live counter and the
cost windows are extra guards on top of it: when their Redis cannot be read they allow the
call and log an error (with the redis quota source, that same outage already refuses
billable calls in throttle 1).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import redis
from django.conf import settings

from posthog_app.redis_client import get_async_client
from products.billing.facade import QuotaStateUnavailable, live_credits_from, queue_add_live_credits, queue_live_credits

from . import cost_limits as cl
from .quota import PipelinedRead, QuotaResolver, get_quota_resolver

logger = logging.getLogger(__name__)

# Denials per scope since the process started (denials are data: logged and counted).
DENIALS: Counter[str] = Counter()


@dataclass(frozen=True)
class ThrottleContext:
    """Everything a throttle may look at; built once per request, before the upstream call."""

    product: str  # canonical product name (aliases resolved)
    billable: bool  # from the registry
    project_id: int
    project_api_token: str
    organization_id: int
    credential: str  # the raw credential of this request: every check of the request uses this one
    credential_kind: str  # "personal_api_key" or "server_token"
    user_id: int | None = None  # the key's owner; None for a server token
    end_user: str = ""  # the end user the caller names (OpenAI `user`, Anthropic `metadata.user_id`)
    model: str = ""
    extra: dict = field(default_factory=dict)  # "credential_header": "x-api-key" or "authorization"


@dataclass(frozen=True)
class Denial:
    """Why a request may not go upstream now."""

    scope: str  # the throttle's scope, e.g. "ai_credits", "live_credits", "product_cost", "user_cost"
    message: str  # shown to the caller
    retry_after: int  # seconds, for the Retry-After header (at least 1)


@dataclass(frozen=True)
class Spend:
    """What one metered call cost, for the throttles that count spend."""

    cost_usd: Decimal
    credits: int


def _timeout() -> float:
    return float(getattr(settings, "LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS", 0.5))


UNBATCHED = object()  # what `reads` returns for a throttle that must run its own `check`


async def _execute(reads: Sequence[PipelinedRead]) -> list[list]:
    """Run every read's commands in one pipeline (one round trip); each read's replies, in order.

    A failed command's reply is its exception; an unreachable Redis raises `QuotaStateUnavailable`
    (bounded by the client's connect and reply timeouts, `LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS`).
    """
    pipe = get_async_client(_timeout()).pipeline(transaction=False)
    for read in reads:
        read.queue(pipe)
    try:
        replies = await pipe.execute(raise_on_error=False)
    except (redis.ConnectionError, redis.TimeoutError, OSError, asyncio.TimeoutError) as exc:
        raise QuotaStateUnavailable(str(exc) or type(exc).__name__) from exc
    out, i = [], 0
    for read in reads:
        out.append(replies[i : i + read.count])
        i += read.count
    return out


async def _run_reads(reads: Sequence[PipelinedRead]) -> list:
    """Read for every throttle in one round trip, then let each judge its replies; denials or exceptions, in order."""
    try:
        replies: list = await _execute(reads)
    except Exception as exc:  # Redis unreachable: every throttle decides what that means for it
        replies = [exc] * len(reads)
    # One after the other: a judgement awaits nothing unless it refuses (then it may look up
    # when the limit ends), and a task per throttle per call cost more than the judging.
    results: list = []
    for read, reply in zip(reads, replies):
        try:
            results.append(await read.decide(reply))
        except Exception as exc:
            results.append(exc)
    return results


async def _check_alone(throttle, ctx: ThrottleContext) -> "Denial | None":
    read = throttle.reads(ctx)
    if read is None:
        return None
    (result,) = await _run_reads([read])
    if isinstance(result, BaseException):
        raise result
    return result


def _values(replies: list | BaseException) -> list:
    """The replies, or raise the exception that stands for them."""
    if isinstance(replies, BaseException):
        raise replies
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


# --- the throttles -----------------------------------------------------------------------


class AICreditsThrottle:
    """Refuse a billable product while the project is limited for `ai_credits` (or its state is unknown)."""

    scope = "ai_credits"

    def __init__(self, resolver: QuotaResolver | None = None) -> None:
        self._resolver = resolver

    def _resolver_now(self) -> QuotaResolver:
        return self._resolver or get_quota_resolver()

    async def check(self, ctx: ThrottleContext) -> Denial | None:
        if not ctx.billable:
            return None
        return self._denial(await self._resolver_now().check(ctx))

    def reads(self, ctx: ThrottleContext):
        """The resolver's read in the chain's pipeline when it has one (the redis source), else `UNBATCHED`."""
        if not ctx.billable:
            return None
        resolver = self._resolver_now()
        split = getattr(resolver, "reads", None)
        if split is None or getattr(resolver, "timeout", None) != _timeout():
            return UNBATCHED  # (a source with a timeout of its own keeps its own client)
        inner = split(ctx)

        async def decide(replies):
            return self._denial(await inner.decide(replies))

        return PipelinedRead(inner.queue, inner.count, decide)

    def _denial(self, answer) -> Denial | None:
        if not answer.limited:
            return None
        return Denial(self.scope, answer.message, max(1, answer.retry_after))


class LiveCreditsThrottle:
    """Refuse a billable product once the organization's live credit counter reaches allowance + buffer."""

    scope = "live_credits"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    async def check(self, ctx: ThrottleContext) -> Denial | None:
        return await _check_alone(self, ctx)

    def reads(self, ctx: ThrottleContext) -> PipelinedRead | None:
        """One HGETALL (billing's `live_credits`, in its two halves)."""
        if not ctx.billable:
            return None

        async def decide(replies):
            return self.judge(ctx, replies)

        return PipelinedRead(lambda pipe: queue_live_credits(pipe, ctx.organization_id), 1, decide)

    def judge(self, ctx: ThrottleContext, replies) -> Denial | None:
        try:
            counter = live_credits_from(_values(replies)[0])
        except Exception as exc:
            logger.error("live credit counter unreadable for organization %s: %s: %s; not enforcing it",
                         ctx.organization_id, type(exc).__name__, exc)
            return None
        now = self.clock()
        if not counter.exceeded(ctx.project_id, now):
            return None
        return Denial(
            self.scope,
            f"This organization has used {counter.used:,} of its {counter.limit:,} AI credits this billing period "
            "(allowance + overage buffer). Top up or wait for the next billing period.",
            max(1, int(counter.period_end - now)),
        )


def _read_windows(requests: list[tuple[cl.Window, list[tuple[int, str]]]], values: list) -> list[list[tuple[int, int]]]:
    """Every window's buckets from one MGET's values; [(bucket, micro-USD)] per window, oldest first."""
    result, i = [], 0
    for _, buckets in requests:
        result.append([(b, int(values[i + n] or 0)) for n, (b, _) in enumerate(buckets)])
        i += len(buckets)
    return result


class _CostThrottle:
    scope = ""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def windows(self, ctx: ThrottleContext) -> list[tuple[str, cl.Window]]:
        raise NotImplementedError

    async def check(self, ctx: ThrottleContext) -> Denial | None:
        return await _check_alone(self, ctx)

    def reads(self, ctx: ThrottleContext) -> PipelinedRead | None:
        """One MGET of every bucket of every window."""
        windows = self.windows(ctx)
        if not windows:
            return None
        now = self.clock()
        requests = [(window, cl.bucket_keys(subject, window, now)) for subject, window in windows]
        keys = [key for _, buckets in requests for _, key in buckets]
        if not keys:
            return None

        async def decide(replies):
            return self.judge(ctx, requests, replies, now)

        return PipelinedRead(lambda pipe: pipe.mget(keys), 1, decide)

    def judge(self, ctx: ThrottleContext, requests, replies, now: float) -> Denial | None:
        try:
            spent = _read_windows(requests, _values(replies)[0])
        except Exception as exc:
            logger.error("cost windows unreadable (%s) for %s: %s: %s; not enforcing them",
                         self.scope, ctx.product, type(exc).__name__, exc)
            return None
        for (window, _), buckets in zip(requests, spent):
            state = cl.window_state(window, buckets, now)
            if state.exceeded:
                return Denial(self.scope, self.message(ctx, window, state), state.retry_after)
        return None

    def message(self, ctx: ThrottleContext, window: cl.Window, state: cl.WindowState) -> str:
        raise NotImplementedError


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "24 hours" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"


class ProductCostThrottle(_CostThrottle):
    """Refuse once all callers of the product together have spent its limit over its window."""

    scope = "product_cost"

    def windows(self, ctx: ThrottleContext) -> list[tuple[str, cl.Window]]:
        return [(cl.product_subject(ctx.product), cl.limits_for(ctx.product).product)]

    def message(self, ctx, window, state) -> str:
        return (
            f"Product {ctx.product} has reached its spending limit of {cl.format_usd(state.limit_micro)} "
            f"per {_span(window.seconds)}; try again later."
        )


class UserCostThrottle(_CostThrottle):
    """Refuse once one user of the product has spent its burst or sustained limit."""

    scope = "user_cost"

    def windows(self, ctx: ThrottleContext) -> list[tuple[str, cl.Window]]:
        subject = cl.user_subject(ctx.product, ctx.user_id, ctx.end_user, ctx.project_id)
        if subject is None:
            return []
        limits = cl.limits_for(ctx.product)
        return [(subject, limits.user_burst), (subject, limits.user_sustained)]

    def message(self, ctx, window, state) -> str:
        kind = "burst" if window.name == "user_burst" else "sustained"
        return (
            f"You have reached your {kind} spending limit of {cl.format_usd(state.limit_micro)} per "
            f"{_span(window.seconds)} for {ctx.product}; try again later."
        )


def default_throttles() -> list:
    """The chain, in the order its denials win."""
    return [AICreditsThrottle(), LiveCreditsThrottle(), ProductCostThrottle(), UserCostThrottle()]


THROTTLES: list = default_throttles()


# --- the runner --------------------------------------------------------------------------


async def check_throttles(ctx: ThrottleContext, throttles: Sequence | None = None) -> Denial | None:
    """Run every throttle for `ctx` concurrently; return the first denial in list order, or None.

    A throttle that raises (none should) refuses a billable call for its own scope and
    is ignored otherwise.
    """
    chain = THROTTLES if throttles is None else throttles
    results: list = [None] * len(chain)
    pipelined: list[tuple[int, PipelinedRead]] = []
    own: list[int] = []
    for i, throttle in enumerate(chain):
        split = getattr(throttle, "reads", None)
        if split is None:
            own.append(i)
            continue
        try:
            read = split(ctx)
        except Exception as exc:
            results[i] = exc
            continue
        if read is UNBATCHED:
            own.append(i)
        elif read is not None:
            pipelined.append((i, read))
    jobs = [chain[i].check(ctx) for i in own]
    if pipelined:
        jobs.append(_run_reads([read for _, read in pipelined]))
    if jobs:
        if len(jobs) == 1:  # the usual case, every throttle in the one pipeline: no task needed
            try:
                done = [await jobs[0]]
            except Exception as exc:
                done = [exc]
        else:
            done = await asyncio.gather(*jobs, return_exceptions=True)
        for i, result in zip(own, done):
            results[i] = result
        if pipelined:
            batch = done[-1]
            if isinstance(batch, BaseException):  # (cancelled, or a bug in the runner itself)
                batch = [batch] * len(pipelined)
            for (i, _), result in zip(pipelined, batch):
                results[i] = result
    for throttle, result in zip(chain, results):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            logger.error("throttle %s failed for project %s: %r", throttle.scope, ctx.project_id, result)
            if not ctx.billable:
                continue
            result = Denial(throttle.scope, "Spending limits could not be checked; try again shortly.", 10)
        if result is not None:
            DENIALS[result.scope] += 1
            logger.warning(
                "throttle denied: scope=%s product=%s project=%s organization=%s user=%s retry_after=%s: %s",
                result.scope, ctx.product, ctx.project_id, ctx.organization_id, ctx.user_id, result.retry_after,
                result.message,
            )
            return result
    return None


async def _count_spends(spends: Sequence[tuple[ThrottleContext, Spend]], now: float) -> None:
    """Add the spends to the cost windows and the credits to the live counters: one pipelined round trip.

    Calls recorded together (the recorder's batch) that share a window bucket or an
    organization add up first, so a busy gateway sends one INCRBY per bucket, not per call.
    """
    micro_by_key: dict[str, int] = {}
    ttl_by_key: dict[str, int] = {}
    credits_by_org: dict[int, int] = {}
    for ctx, spend in spends:
        micro = cl.to_micro_usd(spend.cost_usd)
        if micro > 0:
            limits = cl.limits_for(ctx.product)
            windows = [(cl.product_subject(ctx.product), limits.product)]
            subject = cl.user_subject(ctx.product, ctx.user_id, ctx.end_user, ctx.project_id)
            if subject is not None:
                windows += [(subject, limits.user_burst), (subject, limits.user_sustained)]
            for subject_key, window in windows:
                key = cl.current_key(subject_key, window, now)
                micro_by_key[key] = micro_by_key.get(key, 0) + micro
                ttl_by_key[key] = max(ttl_by_key.get(key, 0), window.seconds + window.bucket_seconds)
        if ctx.billable and spend.credits > 0:
            credits_by_org[ctx.organization_id] = credits_by_org.get(ctx.organization_id, 0) + spend.credits
    if not micro_by_key and not credits_by_org:
        return
    pipe = get_async_client(_timeout()).pipeline(transaction=False)
    for key, micro in micro_by_key.items():
        pipe.incrby(key, micro)
        pipe.expire(key, ttl_by_key[key])
    for organization_id, credits in credits_by_org.items():
        queue_add_live_credits(pipe, organization_id, credits)
    replies = await pipe.execute(raise_on_error=False)  # an unreachable Redis raises here: nothing was counted
    problems = [f"{type(r).__name__}: {r}" for r in replies if isinstance(r, Exception)]
    if problems:
        raise RuntimeError("; ".join(problems))


async def record_spends(spends: Sequence[tuple[ThrottleContext, Spend]], *, now: float | None = None) -> None:
    """Count metered calls' spend against the throttles that track it (never raises)."""
    if not spends:
        return
    try:
        await _count_spends(spends, time.time() if now is None else now)
    except Exception as exc:
        for ctx, spend in spends:
            logger.error(
                "could not count spend (%s USD, %s credits) for project %s / %s: %s: %s",
                spend.cost_usd, spend.credits, ctx.project_id, ctx.product, type(exc).__name__, exc,
            )


async def record_spend(ctx: ThrottleContext, spend: Spend, *, now: float | None = None) -> None:
    """Count one metered call's spend (see `record_spends`; never raises)."""
    await record_spends([(ctx, spend)], now=now)
