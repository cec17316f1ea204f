"""A worker killed while it posts to Slack: on the retry, every bot message still appears exactly once.

Real `manage.py run_temporal_worker` processes against the session's Temporal dev
server, PostgreSQL and Redis. The Slack stand-in takes the post (the message is in
the thread) and then holds its answer, the way a worker dies between Slack accepting
a message and the database recording it; the worker is SIGKILLed there, a new one
takes over, and the thread must hold one picker and one "On it".
"""
from __future__ import annotations

import time
from uuid import uuid4

import pytest

from products.slack_app.models import RepoPicker
from products.tasks.models import Task
from temporal.client import run_sync
from temporal.slack_mention.constants import SIGNAL_REPO_SELECTED, WORKFLOW_TYPE, mention_workflow_id
from temporal.slack_mention.types import OUTCOME_TASK_CREATED, SlackMentionWorkflowResult
from tests.temporal.slack_mention_helpers import CHANNEL, make_integration, mention_event, mention_input
from tests.temporal.test_run_temporal_worker import WorkerProcess, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

PICKER_TEXT = "Which repository should I work in?"


def start_worker(env: dict[str, str], task_queue: str) -> WorkerProcess:
    worker = WorkerProcess(env)
    worker.wait_for_line(f"polling task queue '{task_queue}'", timeout=60)
    return worker


def kill(worker: WorkerProcess) -> None:
    worker.proc.kill()  # SIGKILL: no shutdown, no "finishing running activities"
    worker.proc.wait(10)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_killed_while_posting_the_picker_and_on_it_posts_each_once(temporal, slack_api, accounts, settings):
    task_queue = f"crash-{uuid4()}"
    env = worker_env(settings, TEMPORAL_TASK_QUEUE=task_queue)
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    event = mention_event("the build is red")
    inp = mention_input(integration, event)
    workflow_id = mention_workflow_id(inp.slack_team_id, inp.event_id)

    handle = run_sync(
        temporal.client.start_workflow(
            WORKFLOW_TYPE, inp, id=workflow_id, task_queue=task_queue, result_type=SlackMentionWorkflowResult
        )
    )
    workers: list[WorkerProcess] = []
    try:
        # 1. The picker reaches the thread, and the worker dies before it hears back from Slack.
        picker_post = slack_api.hold("chat.postMessage")
        workers.append(start_worker(env, task_queue))
        assert picker_post.held.wait(60), "the picker was never posted"
        kill(workers[-1])
        picker_post.release()

        # 2. A new worker retries the step: it finds the picker in the thread instead of posting another.
        workers.append(start_worker(env, task_queue))
        wait_until(
            lambda: RepoPicker.objects.filter(workflow_id=workflow_id).exclude(message_ts="").exists(),
            timeout=60,
            what="the retried picker step",
        )
        assert [m["text"] for m in slack_api.thread(CHANNEL, event["ts"])] == [PICKER_TEXT]

        # 3. The answer comes; "On it" reaches the thread and that worker dies too before hearing back.
        on_it_post = slack_api.hold("chat.postMessage")
        run_sync(handle.signal(SIGNAL_REPO_SELECTED, "acme/api"))
        assert on_it_post.held.wait(60), '"On it" was never posted'
        kill(workers[-1])
        on_it_post.release()

        # 4. A third worker finishes the workflow.
        workers.append(start_worker(env, task_queue))
        result = run_sync(handle.result(), timeout=90)
    finally:
        for worker in workers:
            worker.stop()

    assert result.outcome == OUTCOME_TASK_CREATED and result.repository == "acme/api"
    task = Task.objects.get()
    # The mention's own messages (the task's run, started meanwhile, reports under its own workflow id).
    mine = [m for m in slack_api.thread(CHANNEL, event["ts"]) if m["metadata"]["event_payload"]["workflow_id"] == workflow_id]
    texts = [m["text"] for m in mine]
    assert texts == [PICKER_TEXT, f"On it! Follow along at http://testserver/tasks/{task.pk}/"]
    # Each post carries the step in Slack message metadata: that is how the retries found them.
    steps = [m["metadata"]["event_payload"] for m in mine]
    assert steps == [{"workflow_id": workflow_id, "step": "repo_picker"}, {"workflow_id": workflow_id, "step": "on_it"}]
