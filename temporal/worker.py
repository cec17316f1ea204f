"""The one place that says what a Temporal worker of this service runs.

`run_temporal_worker` and the tests both build their worker here, so a workflow or
activity cannot be registered in one and forgotten in the other.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from temporal.db import close_connections_of_stopped_threads
from temporal.slack_mention import activities as slack_mention_activities
from temporal.slack_mention.workflows import SlackMentionWorkflow
from temporal.task_run import activities as task_run_activities
from temporal.task_run.workflows import TaskRunWorkflow

WORKFLOWS: list[type] = [SlackMentionWorkflow, TaskRunWorkflow]

ACTIVITIES: list[Callable] = [
    slack_mention_activities.enforce_billing_quota_activity,
    slack_mention_activities.find_thread_task_activity,
    slack_mention_activities.route_repository_activity,
    slack_mention_activities.post_repo_picker_activity,
    slack_mention_activities.post_thread_message_activity,
    slack_mention_activities.create_task_for_repo_activity,
    slack_mention_activities.forward_followup_activity,
    slack_mention_activities.handle_mention_activity,
    *task_run_activities.ACTIVITIES,
]

# Activities are synchronous (ORM and slack_sdk) and run on this many threads; each
# holds at most one database connection.
DEFAULT_ACTIVITY_THREADS = 16


class ServiceWorker(Worker):
    """A `Worker` that stops its activity threads when it stops.

    Each thread holds its own Django database connection (persistent, CONN_MAX_AGE);
    joining the threads releases them, so a stopped worker leaves no idle sessions behind.
    """

    def __init__(self, client: Client, *, activity_executor: ThreadPoolExecutor, **kwargs) -> None:
        super().__init__(client, activity_executor=activity_executor, **kwargs)
        self._activity_threads = activity_executor

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            # Joining threads and closing Django connections are blocking (and Django refuses
            # them on an event loop thread), so do both on a helper thread.
            await asyncio.to_thread(self._stop_activity_threads)

    def _stop_activity_threads(self) -> None:
        self._activity_threads.shutdown(wait=True)
        close_connections_of_stopped_threads()


def build_worker(
    client: Client,
    task_queue: str,
    *,
    activities: Sequence[Callable] | None = None,
    workflows: Sequence[type] | None = None,
    max_activity_threads: int = DEFAULT_ACTIVITY_THREADS,
    graceful_shutdown_timeout: timedelta = timedelta(seconds=10),
) -> Worker:
    """Return a worker for `task_queue` running every workflow and activity of this service.

    `activities` / `workflows` replace the registered lists (tests stand in for one
    activity by registering another function under its name, or run an older version of
    a workflow); by default all of them run.
    """
    return ServiceWorker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS if workflows is None else workflows),
        activities=list(ACTIVITIES if activities is None else activities),
        activity_executor=ThreadPoolExecutor(max_workers=max_activity_threads, thread_name_prefix="temporal-activity"),
        max_concurrent_activities=max_activity_threads,
        graceful_shutdown_timeout=graceful_shutdown_timeout,
    )
