"""Helpers shared by the workflow tests and the history recorder: rows, Slack events, a worker run."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import uuid4

from temporalio.client import Client, WorkflowHandle

from products.slack_app.models import Integration
from temporal.slack_mention.constants import mention_workflow_id
from temporal.slack_mention.types import SlackMentionWorkflowInput, SlackMentionWorkflowResult
from temporal.slack_mention.workflows import SlackMentionWorkflow
from temporal.worker import build_worker

BOT_TOKEN = "xoxb-workflow-tests"
CHANNEL = "CWORK"
_ts = itertools.count(1)


def make_integration(accounts, *, repositories: Sequence[str] = (), default: str | None = None) -> Integration:
    integration = Integration(
        project=accounts.project(),
        kind="slack",
        integration_id=f"T{uuid4().hex[:10].upper()}",
        config={"repositories": list(repositories), "default_repository": default, "alerts_channel": None},
    )
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    return integration


def mention_event(text: str, *, user: str = "UALICE", channel: str = CHANNEL, thread_ts: str | None = None) -> dict[str, Any]:
    """An `app_mention` event as Slack sends it (a reply in a thread carries `thread_ts`)."""
    ts = f"1700{next(_ts):06d}.000200"
    event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def mention_input(integration: Integration, event: dict[str, Any], event_id: str | None = None) -> SlackMentionWorkflowInput:
    return SlackMentionWorkflowInput(
        event=event,
        integration_id=integration.pk,
        slack_team_id=integration.integration_id,
        event_id=event_id or f"Ev{uuid4().hex[:12].upper()}",
    )


async def run_mention(
    client: Client,
    inp: SlackMentionWorkflowInput,
    *,
    activities: Sequence[Callable] | None = None,
    workflow_class: type = SlackMentionWorkflow,
    while_running: Callable[[WorkflowHandle], Awaitable[None]] | None = None,
) -> tuple[SlackMentionWorkflowResult | BaseException, WorkflowHandle]:
    """Run one mention workflow on a real worker on a fresh task queue; return (result or error, handle)."""
    task_queue = f"test-{uuid4()}"
    worker = build_worker(client, task_queue, activities=activities, workflows=[workflow_class])
    async with worker:
        handle = await client.start_workflow(
            workflow_class.run,
            inp,
            id=mention_workflow_id(inp.slack_team_id, inp.event_id),
            task_queue=task_queue,
        )
        if while_running is not None:
            await while_running(handle)
        try:
            result: SlackMentionWorkflowResult | BaseException = await handle.result()
        except Exception as err:  # returned, so tests can assert on the failure
            result = err
    return result, handle


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `predicate` without blocking the event loop the worker runs on."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
