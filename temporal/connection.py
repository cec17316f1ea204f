"""The connection to Temporal shared by a process: one event loop on a daemon thread, one `Client` on it.

Split out of `temporal.client` (which re-exports all of it) so that code inside `temporal/`
that starts or signals workflows (the mention workflow's activities start task runs)
can use the connection without importing `temporal.client`, which imports every
workflow package's names: that would be an import cycle between `temporal/` packages.
"""
from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from temporalio.api.common.v1 import Payloads, WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_clients: dict[tuple[str, str], Client] = {}
_connecting: dict[tuple[str, str], asyncio.Future] = {}

CONNECT_TIMEOUT_SECONDS = 5.0


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_loop.run_forever, name="temporal-client-loop", daemon=True)
            thread.start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run `coro` on the shared loop and wait up to `timeout` seconds for its result."""
    future = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


async def get_client() -> Client:
    """Return the connected client for the configured address and namespace (on the shared loop).

    The connection is made once per address, in a task of its own: a caller that stops
    waiting (the webhook's deadline) does not cancel it, so the next request finds it
    made instead of starting over.
    """
    key = (settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE)
    client = _clients.get(key)
    if client is not None:
        return client
    pending = _connecting.get(key)
    if pending is None or (pending.done() and (pending.cancelled() or pending.exception() is not None)):
        pending = asyncio.ensure_future(_connect(key))
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no "never retrieved" noise
        _connecting[key] = pending
    return await asyncio.shield(pending)


async def _connect(key: tuple[str, str]) -> Client:
    try:
        client = await asyncio.wait_for(Client.connect(key[0], namespace=key[1]), timeout=CONNECT_TIMEOUT_SECONDS)
    finally:
        _connecting.pop(key, None)
    _clients[key] = client
    return client


class TemporalUnavailable(Exception):
    """Temporal could not be reached (or did not answer in time); nothing was started or signalled."""


_UNAVAILABLE_CODES = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
}


def _call(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """run_sync, with every "could not reach Temporal" failure turned into TemporalUnavailable."""
    try:
        return run_sync(coro, timeout=timeout)
    except RPCError as exc:
        if exc.status in _UNAVAILABLE_CODES:
            raise TemporalUnavailable(f"Temporal RPC failed: {exc.status.name}: {exc.message}") from exc
        raise
    except (TimeoutError, asyncio.TimeoutError, ConnectionError, OSError) as exc:
        raise TemporalUnavailable(f"Temporal did not answer: {exc!r}") from exc
    except RuntimeError as exc:  # the core client reports connect failures as RuntimeError
        if "connect" in str(exc).lower():
            raise TemporalUnavailable(str(exc)) from exc
        raise


async def start_once(
    client: Client, *, workflow_id: str, workflow_type: str, arg: Any, task_queue: str | None, rpc_timeout: timedelta
) -> bool:
    """Start `workflow_type` as `workflow_id` unless it exists; True if this call started it.

    Conflict policy USE_EXISTING (a running one with this id is the same work) and reuse
    policy REJECT_DUPLICATE (a closed one is never run again) make any number of starts
    of one id one execution. The request is built at the service level (not
    `Client.start_workflow`) because only the raw response says whether this call
    started the workflow (`started`).
    """
    request = StartWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_id=workflow_id,
        workflow_type=WorkflowType(name=workflow_type),
        task_queue=TaskQueue(name=task_queue or settings.TEMPORAL_TASK_QUEUE),
        input=Payloads(payloads=await client.data_converter.encode([arg])),
        identity=client.identity,
        request_id=str(uuid.uuid4()),
        workflow_id_reuse_policy=int(WorkflowIDReusePolicy.REJECT_DUPLICATE),
        workflow_id_conflict_policy=int(WorkflowIDConflictPolicy.USE_EXISTING),
    )
    try:
        response = await client.workflow_service.start_workflow_execution(request, retry=True, timeout=rpc_timeout)
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            return False  # closed earlier, and REJECT_DUPLICATE: this work was already done
        raise
    return bool(response.started)
