"""The one module through which the web process talks to Temporal.

Django views are synchronous and the Temporal SDK is asyncio, so each process keeps
one event loop on a daemon thread and one connected `Client` on it; views submit
coroutines to that loop and wait for the result. The connection is reused across
requests (a workflow start costs one gRPC call, not a handshake).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import timedelta
from collections.abc import Coroutine
from typing import Any, TypeVar

from django.conf import settings
from temporalio.api.common.v1 import Payloads, WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

# Re-exported for the web side (products/ imports only this module from temporal/):
# SlackMentionWorkflowInput, mention_workflow_id.
from temporal.slack_mention.constants import (
    SIGNAL_NO_REPO_NEEDED,
    SIGNAL_REPO_SELECTED,
    WORKFLOW_TYPE,
    mention_workflow_id,
)
from temporal.slack_mention.types import SlackMentionWorkflowInput

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


def check_temporal_health(timeout: float = 3.0) -> None:
    """Raise if the Temporal frontend does not answer a health check."""

    async def check() -> None:
        client = await get_client()
        ok = await client.service_client.check_health(timeout=timedelta(seconds=timeout))
        if not ok:
            raise RuntimeError("Temporal health check failed")

    run_sync(check(), timeout=timeout + 5)


# --- The Slack mention workflow: start and signal (the web side's only entry points) ------

logger = logging.getLogger(__name__)

# The webhook and the interactivity endpoint have Slack's 3 s to answer, of which the
# database and the quota read (250 ms at most) take some: a start or signal that has not
# finished within its deadline (connecting included) is reported as unavailable (503 for
# the webhook) and Slack delivers again, which the workflow id makes harmless.
START_RPC_TIMEOUT = timedelta(seconds=0.8)
SIGNAL_RPC_TIMEOUT = timedelta(seconds=0.8)
START_DEADLINE_SECONDS = 1.0  # the whole start, connecting included
SIGNAL_DEADLINE_SECONDS = 1.0


class TemporalUnavailable(Exception):
    """Temporal could not be reached (or did not answer in time); nothing was started or signalled."""


class WorkflowGone(Exception):
    """The workflow does not exist or has already closed, so it cannot take the signal."""


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


def start_mention_workflow(inp: SlackMentionWorkflowInput) -> bool:
    """Start the mention workflow for one Slack event; True if started now, False if it already existed.

    The id is derived from the event (`mention_workflow_id`), with conflict policy
    USE_EXISTING (a running duplicate is the same mention) and reuse policy
    REJECT_DUPLICATE (a closed one is never run again), so any number of deliveries of
    one event make one workflow. Raises `TemporalUnavailable` when Temporal is unreachable.

    The request is built at the service level (not `Client.start_workflow`) because only
    the raw response says whether this call started the workflow (`started`).
    """
    workflow_id = mention_workflow_id(inp.slack_team_id, inp.event_id)

    async def start() -> bool:
        client = await get_client()
        request = StartWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_id=workflow_id,
            workflow_type=WorkflowType(name=WORKFLOW_TYPE),
            task_queue=TaskQueue(name=settings.TEMPORAL_TASK_QUEUE),
            input=Payloads(payloads=await client.data_converter.encode([inp])),
            identity=client.identity,
            request_id=str(uuid.uuid4()),
            workflow_id_reuse_policy=int(WorkflowIDReusePolicy.REJECT_DUPLICATE),
            workflow_id_conflict_policy=int(WorkflowIDConflictPolicy.USE_EXISTING),
        )
        try:
            response = await client.workflow_service.start_workflow_execution(
                request, retry=True, timeout=START_RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                return False  # closed earlier and REJECT_DUPLICATE: this event was already handled
            raise
        return bool(response.started)

    try:
        return _call(start(), timeout=START_DEADLINE_SECONDS)
    except WorkflowAlreadyStartedError:
        return False


def _signal(workflow_id: str, signal: str, *args: Any) -> None:
    async def send() -> None:
        client = await get_client()
        handle = client.get_workflow_handle(workflow_id)
        try:
            await handle.signal(signal, *args, rpc_timeout=SIGNAL_RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise WorkflowGone(f"workflow {workflow_id} is not running") from exc
            raise

    _call(send(), timeout=SIGNAL_DEADLINE_SECONDS)


def signal_repo_selected(workflow_id: str, repository: str) -> None:
    """Tell the waiting mention workflow which repository the user picked; WorkflowGone if it is not running."""
    _signal(workflow_id, SIGNAL_REPO_SELECTED, repository)


def signal_no_repo_needed(workflow_id: str) -> None:
    """Tell the waiting mention workflow that no repository is needed; WorkflowGone if it is not running."""
    _signal(workflow_id, SIGNAL_NO_REPO_NEEDED)
