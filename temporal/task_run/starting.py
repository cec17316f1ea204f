"""Starting and signalling the task-run workflow (re-exported by `temporal.client`).

Its own module, on the shared connection (temporal/connection.py), so the mention
workflow's activities can start task runs without importing `temporal.client`.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from temporal.connection import _call, get_client, start_once

from .constants import SIGNAL_FOLLOWUP, SIGNAL_RUN_CHANGED, TASK_RUN_WORKFLOW_TYPE, task_run_workflow_id
from .types import TaskRunWorkflowInput

logger = logging.getLogger(__name__)

SIGNAL_RPC_TIMEOUT = timedelta(seconds=0.8)

# Starting a task run happens inside an activity (no 3-second Slack deadline): a failure
# raises and the activity is retried, so a created task always gets its workflow.
TASK_RUN_START_RPC_TIMEOUT = timedelta(seconds=5)
TASK_RUN_START_DEADLINE_SECONDS = 10.0
# Signals to a task run are best effort (the workflow also polls): short, never raised.
NOTIFY_DEADLINE_SECONDS = 2.0


async def start_task_run_workflow_async(client: Client, inp: TaskRunWorkflowInput, *, task_queue: str | None = None) -> bool:
    """Start the task-run workflow for `inp.run_id` with `client`; True if started now, False if it already existed.

    Id `posthog-code-task-run-<run_id>` with conflict policy USE_EXISTING (a running one is this run's)
    and reuse policy REJECT_DUPLICATE (a closed one is never run again: a resumed task
    is a new run, so a new id), so starting twice is a no-op. `task_queue` defaults to
    `TEMPORAL_TASK_QUEUE`; an activity passes its own, so the run is served by the
    workers that serve the mention.
    """
    return await start_once(
        client,
        workflow_id=task_run_workflow_id(inp.run_id),
        workflow_type=TASK_RUN_WORKFLOW_TYPE,
        arg=inp,
        task_queue=task_queue,
        rpc_timeout=TASK_RUN_START_RPC_TIMEOUT,
    )


def start_task_run_workflow(inp: TaskRunWorkflowInput, *, task_queue: str | None = None) -> bool:
    """`start_task_run_workflow_async` from synchronous code (an activity thread, a view); raises `TemporalUnavailable`."""

    async def start() -> bool:
        return await start_task_run_workflow_async(await get_client(), inp, task_queue=task_queue)

    try:
        return _call(start(), timeout=TASK_RUN_START_DEADLINE_SECONDS)
    except WorkflowAlreadyStartedError:
        return False


def _signal_task_run(run_id: int, signal: str) -> None:
    """Signal the run's workflow; best effort: not running, unreachable or slow is logged, never raised."""
    workflow_id = task_run_workflow_id(run_id)

    async def send() -> None:
        client = await get_client()
        try:
            await client.get_workflow_handle(workflow_id).signal(signal, rpc_timeout=SIGNAL_RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                return  # no such run workflow, or it has finished: nothing to tell
            raise

    try:
        _call(send(), timeout=NOTIFY_DEADLINE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - best effort: the workflow polls the run anyway
        logger.warning("Could not signal %s to %s: %s", signal, workflow_id, exc)


def notify_task_run(run_id: int) -> None:
    """Tell the run's workflow the run changed (claim, progress, finish) so it reacts now; best effort, never raises."""
    _signal_task_run(run_id, SIGNAL_RUN_CHANGED)


def deliver_followup(run_id: int) -> None:
    """Tell the run's workflow a follow-up was stored on the run; best effort, never raises."""
    _signal_task_run(run_id, SIGNAL_FOLLOWUP)
