"""Metering by the gateway itself: every call, success or failure, becomes one usage event.

The view fills a `CallMeter` while the call runs (tokens from the upstream's usage, time to
first token, the error if any) and calls `finish()` once the response or stream has ended
(a client that went away mid-stream included). `finish()` never touches the database on
the response path: it schedules `_record` as a task on the event loop, which hands the
call to the loop's `_Recorder`; that prices calls (`pricing.cost_of`) and stores them in
batches through billing's facade (`record_usage_events`) in the usage thread pool (db.py),
then tells the throttles what the batch spent (one Redis round trip per batch).

`wait_for_recordings()` blocks until every scheduled recording has been stored: tests (and
a graceful shutdown) use it, since the client has its answer before the usage is stored.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

from products.accounts.facade import Project
from products.billing.facade import CheckedUsageEvent, credits_for_cost, record_usage_events

from .db import run_usage
from .pricing import TokenUsage, cost_of
from .products import ProductConfig
from .throttles import Spend, ThrottleContext, record_spends

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000
# Every property the gateway sets on an event; a caller's value for any of them is dropped.
OWNED_PROPERTIES = frozenset(
    {
        "$ai_product", "$ai_billable", "$ai_product_requested", "$ai_model", "$ai_provider", "$ai_input_tokens",
        "$ai_output_tokens", "$ai_cache_read_input_tokens", "$ai_cache_creation_input_tokens", "$ai_total_cost_usd",
        "$ai_price_source", "$ai_latency", "$ai_time_to_first_token", "$ai_stream", "$ai_trace_id",
        "$ai_http_status", "$ai_is_error", "$ai_error", "$ai_gateway", "$ai_credential", "$ai_client_disconnected",
        "$ai_run_id", "$ai_end_user",
    }
)


class _InFlight:
    """Counts recordings scheduled but not yet stored, across threads (the server's and a test's)."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def begin(self) -> None:
        with self._cond:
            self._count += 1

    def end(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout)


_in_flight = _InFlight()
_tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones
MAX_BATCH = 500
# How long the first call of a batch waits for others. Every batch costs a hop to the usage
# thread, a transaction and a Redis round trip whatever its size; under load, waiting this
# long makes batches of several calls (less work per call, and the usage thread takes the
# GIL from the event loop less often). Usage is stored this much later: nobody waits on it.
LINGER_SECONDS = 0.05


class _Recorder:
    """Stores the calls of one event loop in batches: whatever queued while the last write ran.

    An idle gateway writes each call `LINGER_SECONDS` after it ends; a busy one writes every
    call that ended in that time in one transaction (one `record_usage_events` per project
    of the batch), so recording keeps up with the calls without a database round trip per call.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[CallMeter, float, asyncio.Future]] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._drain())

    async def store(self, meter: "CallMeter", latency: float) -> Spend:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((meter, latency, future))
        return await future

    async def _drain(self) -> None:
        while True:
            batch = [await self.queue.get()]
            await asyncio.sleep(LINGER_SECONDS)  # let the calls finishing meanwhile join this batch
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                spends = await run_usage(_store_batch, [(meter, latency) for meter, latency, _ in batch])
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            # The batch's spend, in one Redis round trip, before its calls count as recorded.
            await record_spends([(meter.throttle_ctx, spend) for (meter, _, _), spend in zip(batch, spends)
                                 if meter.throttle_ctx is not None])
            for (_, _, future), spend in zip(batch, spends):
                if not future.done():
                    future.set_result(spend)


_recorders: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Recorder]" = weakref.WeakKeyDictionary()


def _recorder() -> _Recorder:
    loop = asyncio.get_running_loop()
    recorder = _recorders.get(loop)
    if recorder is None or recorder.task.done():
        recorder = _recorders[loop] = _Recorder()
    return recorder


def _store_batch(calls: list[tuple["CallMeter", float]]) -> list[Spend]:
    """Price and store `calls` (in a usage-pool thread): one `record_usage_events` per project."""
    events = [meter.usage_event(latency) for meter, latency in calls]
    by_project: dict[int, tuple[Project, list[CheckedUsageEvent]]] = {}
    for (meter, _), event in zip(calls, events):
        by_project.setdefault(meter.project.pk, (meter.project, []))[1].append(event)
    for project, project_events in by_project.values():
        record_usage_events(project, project_events)
    return [Spend(cost_usd=e.cost_usd, credits=credits_for_cost(e.cost_usd)) for e in events]


def wait_for_recordings(timeout: float = 10.0) -> bool:
    """Block until every call begun so far has been recorded; False when `timeout` passed first."""
    return _in_flight.wait(timeout)


@dataclass
class CallMeter:
    """What is known about one call so far; mutated while the call runs, recorded once at the end."""

    product: ProductConfig
    project: Project
    provider: str
    model: str
    trace_id: str
    stream: bool
    credential_kind: str
    throttle_ctx: ThrottleContext | None = None
    caller_properties: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    end_user: str = ""
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    input_includes_cache: bool = True
    http_status: int | None = None
    error: str | None = None
    client_disconnected: bool = False
    _finished: bool = False

    def __post_init__(self) -> None:
        _in_flight.begin()  # before the client can have its answer, so a waiter never misses it

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def fail(self, message: str, status: int | None = None) -> None:
        self.error = message[:MAX_ERROR_CHARS]
        if status is not None:
            self.http_status = status

    def finish(self, before: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Schedule the recording (once), after `before` (e.g. closing the upstream stream) has run.

        Safe to call from a `finally` of a cancelled task: it only creates a task.
        """
        if self._finished:
            return
        self._finished = True
        latency = time.monotonic() - self.started
        try:
            task = asyncio.get_running_loop().create_task(self._record(latency, before))
        except RuntimeError:  # no running loop (a stream dropped outside it): nothing can be recorded now
            logger.error("LLM usage not recorded: no event loop (product %s, trace %s)", self.product.name, self.trace_id)
            _in_flight.end()
            return
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    async def _record(self, latency: float, before: Callable[[], Awaitable[Any]] | None) -> None:
        try:
            if before is not None:
                try:
                    await before()
                except Exception:  # closing a broken upstream connection may fail; the usage still counts
                    logger.debug("closing the upstream response failed", exc_info=True)
            await _recorder().store(self, latency)  # stored, and its spend counted
        except Exception:
            logger.exception("recording LLM usage failed (product %s, trace %s)", self.product.name, self.trace_id)
        finally:
            _in_flight.end()

    def usage_event(self, latency: float) -> CheckedUsageEvent:
        """Return the call's event; the registry's product and billable flag are applied last."""
        usage = TokenUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            input_includes_cache=self.input_includes_cache,
        )
        price = cost_of(self.provider, self.model, usage)
        cost = price.cost_usd.quantize(Decimal("0.000000001"))
        is_error = self.error is not None
        # The caller's own properties (session, span, team...) are kept; none of the ones the
        # gateway owns, even those it sets only sometimes (an `$ai_error` on a success, say).
        properties: dict[str, Any] = {k: v for k, v in self.caller_properties.items() if k not in OWNED_PROPERTIES}
        properties.update(
            {
                "$ai_model": self.model,
                "$ai_provider": self.provider,
                "$ai_input_tokens": self.input_tokens,
                "$ai_output_tokens": self.output_tokens,
                "$ai_cache_read_input_tokens": self.cache_read_tokens,
                "$ai_cache_creation_input_tokens": self.cache_write_tokens,
                "$ai_total_cost_usd": float(cost),
                "$ai_price_source": price.source,
                "$ai_latency": round(latency, 4),
                "$ai_stream": self.stream,
                "$ai_trace_id": self.trace_id,
                "$ai_http_status": self.http_status,
                "$ai_is_error": is_error,
                "$ai_gateway": True,
                "$ai_credential": self.credential_kind,
            }
        )
        if self.first_token_at is not None:
            properties["$ai_time_to_first_token"] = round(self.first_token_at - self.started, 4)
        if is_error:
            properties["$ai_error"] = self.error
        if self.client_disconnected:
            properties["$ai_client_disconnected"] = True
        if self.run_id is not None:
            properties["$ai_run_id"] = self.run_id
        if self.end_user:
            properties["$ai_end_user"] = self.end_user
        # Owned by the registry, applied last: no header or body field can spoof them.
        properties["$ai_product"] = self.product.name
        properties["$ai_billable"] = self.product.billable
        return CheckedUsageEvent(
            uuid=uuid.uuid4(),
            timestamp=timezone.now(),
            product=self.product.name,
            billable=self.product.billable,
            cost_usd=cost,
            model=self.model[:200],
            provider=self.provider,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            is_error=is_error,
            properties=properties,
        )
