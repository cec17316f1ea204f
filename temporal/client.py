"""The one module through which the web process talks to Temporal.

Django views are synchronous and the Temporal SDK is asyncio, so each process keeps
one event loop on a daemon thread and one connected `Client` on it; views submit
coroutines to that loop and wait for the result. The connection is reused across
requests (a workflow start costs one gRPC call, not a handshake). The loop and the
client live in temporal/connection.py, re-exported here.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

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

# The task-run workflow (issue 9): its names, and starting and signalling it (the tasks
# product's runner API notifies it; the mention workflow's activities start it).
from temporal.task_run.constants import TASK_RUN_WORKFLOW_TYPE, task_run_workflow_id  # noqa: F401 - re-exported
from temporal.task_run.starting import (  # noqa: F401 - re-exported
    deliver_followup,
    notify_task_run,
    start_task_run_workflow,
    start_task_run_workflow_async,
)
from temporal.task_run.types import TaskRunWorkflowInput  # noqa: F401 - re-exported

# The shared connection (temporal/connection.py), re-exported: callers import it from here.
from temporal.connection import (  # noqa: F401 - re-exported
    CONNECT_TIMEOUT_SECONDS,
    TemporalUnavailable,
    _call,
    get_client,
    run_sync,
    start_once,
)


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


class WorkflowGone(Exception):
    """The workflow does not exist or has already closed, so it cannot take the signal."""


def start_mention_workflow(inp: SlackMentionWorkflowInput) -> bool:
    """Start the mention workflow for one Slack event; True if started now, False if it already existed.

    The id is derived from the event (`mention_workflow_id`), with conflict policy
    USE_EXISTING (a running duplicate is the same mention) and reuse policy
    REJECT_DUPLICATE (a closed one is never run again), so any number of deliveries of
    one event make one workflow. Raises `TemporalUnavailable` when Temporal is unreachable.
    """
    async def start() -> bool:
        return await start_once(
            await get_client(),
            workflow_id=mention_workflow_id(inp.slack_team_id, inp.event_id),
            workflow_type=WORKFLOW_TYPE,
            arg=inp,
            task_queue=None,
            rpc_timeout=START_RPC_TIMEOUT,
        )

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
