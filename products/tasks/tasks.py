"""Celery tasks of the tasks product (found by `app.autodiscover_tasks()`)."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="products.tasks.tasks.fail_stale_task_runs", ignore_result=True)
def fail_stale_task_runs() -> list[int]:
    """Fail external runs whose runner stopped sending heartbeats, and tell their workflows (every minute).

    The task-run workflow checks its own run too (`fail_if_stale`); this sweep is what
    catches a run whose workflow is not running (a worker down for a while), so the run
    still ends and the thread is told once the workflow comes back.
    """
    from .runs import sweep_stale_runs

    return sweep_stale_runs()
