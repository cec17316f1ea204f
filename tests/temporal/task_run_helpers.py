"""Helpers for the task-run workflow tests: the real worker in process, mentions, runs, the thread."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from products.tasks.models import AgentSettings, Task, TaskRun
from temporal.client import run_sync, task_run_workflow_id
from temporal.slack_mention.constants import WORKFLOW_TYPE, mention_workflow_id
from tests.temporal.slack_mention_helpers import CHANNEL, mention_event, mention_input

STATUS_WORKING = ":hourglass_flowing_sand: Working on it…"
STATUS_WAITING = ":hourglass_flowing_sand: Waiting for a runner to pick this up…"


@pytest.fixture
def worker(temporal, settings):
    """The service's real worker (every workflow and activity) polling this test's own task queue."""
    from temporal.worker import build_worker

    settings.TEMPORAL_TASK_QUEUE = task_queue = f"test-task-run-{uuid.uuid4()}"

    async def start():
        worker = build_worker(temporal.client, task_queue)  # built on the shared loop (the sandbox wants one)
        return worker, asyncio.get_running_loop().create_task(worker.run())

    worker, task = run_sync(start())
    yield worker

    async def stop() -> None:
        await worker.shutdown()
        await task

    run_sync(stop(), timeout=60)


def use_external_runners(project) -> None:
    AgentSettings.objects.update_or_create(project=project, defaults={"backend": "external"})


def mention(temporal, settings, integration, text: str, *, thread_ts: str | None = None) -> tuple[dict[str, Any], str]:
    """Start the mention workflow for a new @mention (in `thread_ts`'s thread, if given); return (event, workflow id)."""
    event = mention_event(text, thread_ts=thread_ts)
    inp = mention_input(integration, event)
    workflow_id = mention_workflow_id(inp.slack_team_id, inp.event_id)
    run_sync(temporal.client.start_workflow(WORKFLOW_TYPE, inp, id=workflow_id, task_queue=settings.TEMPORAL_TASK_QUEUE))
    return event, workflow_id


def result_of(temporal, workflow_id: str, timeout: float = 60) -> dict[str, Any]:
    """The workflow's result (an untyped handle's: a dict)."""
    return run_sync(temporal.client.get_workflow_handle(workflow_id).result(), timeout=timeout)


def run_result(temporal, run_id: int, timeout: float = 60) -> dict[str, Any]:
    return result_of(temporal, task_run_workflow_id(run_id), timeout=timeout)


def only_run(project) -> TaskRun:
    [task] = Task.objects.filter(project=project)
    [run] = task.runs.all()
    return run


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def thread_texts(slack_api, thread_ts: str) -> list[str]:
    return [m["text"] for m in slack_api.thread(CHANNEL, thread_ts)]


def thread_steps(slack_api, thread_ts: str) -> list[str]:
    """The post-once step of each bot message in the thread ("on_it", "status", "result"...)."""
    return [m.get("metadata", {}).get("event_payload", {}).get("step", "") for m in slack_api.thread(CHANNEL, thread_ts)]


def reactions(slack_api, ts: str) -> list[tuple[str, str]]:
    """(method, name) of every reaction call on the message `ts`, in order."""
    return [
        (c.method, c.args.get("name"))
        for c in slack_api.calls
        if c.method in ("reactions.add", "reactions.remove") and c.args.get("timestamp") == ts
    ]
