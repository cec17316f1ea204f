"""Workers killed in the middle of a task run: the run finishes on another worker and every message
of the run appears exactly once in the thread.

Real `manage.py run_temporal_worker` processes against the session's Temporal dev server,
PostgreSQL and Redis; the run is worked by an external runner (this test, through the REST
API). The Slack stand-in takes a post (the message is in the thread) and holds its answer,
the way a worker dies between Slack accepting a message and the database recording it.
The first worker dies posting the status message; the runner works and finishes the run
while no worker is alive; the second worker dies posting the pull-request card; the third
finishes. The thread must hold one "On it", one status message and one card.
"""
from __future__ import annotations

import json
from uuid import uuid4

import pytest

from products.tasks.models import Task, TaskRun
from temporal.client import run_sync, task_run_workflow_id
from temporal.slack_mention.constants import WORKFLOW_TYPE, mention_workflow_id
from tests.temporal.slack_mention_helpers import CHANNEL, make_integration, mention_event, mention_input
from tests.temporal.task_run_helpers import STATUS_WAITING, thread_steps, use_external_runners, wait_until
from tests.temporal.test_run_temporal_worker import WorkerProcess, worker_env
from tests.temporal.test_task_run_external import PR_URL, Runner
from tests.temporal.test_worker_killed_mid_post import kill, start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_workers_killed_mid_run_resume_it_without_duplicate_posts(temporal, slack_api, accounts, settings):
    task_queue = f"crash-run-{uuid4()}"
    env = worker_env(settings, TEMPORAL_TASK_QUEUE=task_queue)
    integration = make_integration(accounts, repositories=["acme/web"])
    use_external_runners(integration.project)
    runner = Runner(accounts, integration.project)
    event = mention_event("fix the flaky login test")
    inp = mention_input(integration, event)

    workers: list[WorkerProcess] = []
    try:
        # 1. The status message reaches the thread, and the worker dies before it hears back from Slack.
        status_post = slack_api.hold("chat.postMessage", match=lambda args: str(args.get("text", "")).startswith(STATUS_WAITING))
        workers.append(start_worker(env, task_queue))
        run_sync(temporal.client.start_workflow(
            WORKFLOW_TYPE, inp, id=mention_workflow_id(inp.slack_team_id, inp.event_id), task_queue=task_queue
        ))
        assert status_post.held.wait(60), "the status message was never posted"
        kill(workers[-1])
        status_post.release()

        # 2. The runner works the run and finishes it while no worker is alive.
        run = TaskRun.objects.get(task__project=integration.project)
        assert runner.claim()["id"] == run.pk
        assert runner.progress(run.pk, "Running the test suite").status_code == 200
        card_post = slack_api.hold("chat.postMessage", match=lambda args: bool(args.get("blocks")))
        assert runner.finish(run.pk, status="completed", summary="Pinned the clock.", pr_url=PR_URL).status_code == 200

        # 3. A new worker picks the run up: it finds the status message instead of posting another,
        #    sees the run finished, and dies posting the card.
        workers.append(start_worker(env, task_queue))
        assert card_post.held.wait(90), "the card was never posted"
        kill(workers[-1])
        card_post.release()

        # 4. A third worker finishes the report.
        workers.append(start_worker(env, task_queue))
        result = run_sync(temporal.client.get_workflow_handle(task_run_workflow_id(run.pk)).result(), timeout=90)
    finally:
        for worker in workers:
            worker.stop()

    assert (result["status"], result["reported"]) == ("completed", True)
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result"]
    [task] = Task.objects.filter(project=integration.project)
    messages = slack_api.thread(CHANNEL, event["ts"])
    assert messages[0]["text"] == f"On it! Follow along at http://testserver/tasks/{task.pk}/"
    assert messages[1]["text"].startswith(":white_check_mark: Done.")  # edited in place, never posted again
    blocks = messages[2]["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert any(e.get("url") == PR_URL for b in blocks if b["type"] == "actions" for e in b["elements"])
    # Each was posted once or found again by its metadata: the run's workflow id and the step.
    assert [m["metadata"]["event_payload"] for m in messages[1:]] == [
        {"workflow_id": task_run_workflow_id(run.pk), "step": "status"},
        {"workflow_id": task_run_workflow_id(run.pk), "step": "result"},
    ]
    assert wait_until(lambda: TaskRun.objects.get(pk=run.pk).status == "completed")
