"""Creating tasks and appending follow-ups; the only module other products call to change tasks.

Both writers are idempotent on a caller-supplied key, because their callers
(Temporal activities) can be retried or replayed: the unique constraint on
`idempotency_key` decides the race, and the loser reads the winner's row.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from products.accounts.models import Project

from .models import Task, TaskFollowUp, TaskRun


@dataclass(frozen=True)
class CreatedTask:
    task: Task
    run: TaskRun
    created: bool  # False: the key had already been used; these are the rows made then


@dataclass(frozen=True)
class FollowUpResult:
    run: TaskRun
    followup: TaskFollowUp
    resumed: bool  # True: the latest run had finished, so `run` is a new run resuming it
    created: bool  # False: the key had already been used; nothing was appended now


def current_run(task: Task) -> TaskRun:
    """Return the task's latest run (every task has at least one)."""
    return task.runs.order_by("-created_at", "-id").first()


def create_task(
    *,
    project: Project,
    title: str,
    description: str,
    repository: str | None,
    origin_product: str,
    idempotency_key: str | None,
) -> CreatedTask:
    """Create a task with one queued run, or return the one already created with `idempotency_key`.

    Safe under concurrency: two callers with the same key get the same task.
    """
    if idempotency_key:
        existing = Task.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return CreatedTask(task=existing, run=current_run(existing), created=False)
    try:
        with transaction.atomic():
            task = Task.objects.create(
                project=project,
                title=title[:255] or "Untitled task",
                description=description,
                repository=repository or "",
                origin_product=origin_product,
                idempotency_key=idempotency_key or None,
            )
            run = TaskRun.objects.create(task=task)
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = Task.objects.get(idempotency_key=idempotency_key)
        return CreatedTask(task=existing, run=current_run(existing), created=False)
    return CreatedTask(task=task, run=run, created=True)


def add_followup(
    *,
    task: Task,
    text: str,
    author_slack_user_id: str,
    author_name: str,
    idempotency_key: str | None,
) -> FollowUpResult:
    """Append `text` to the task's current run; if that run has finished, start a new run resuming it.

    Idempotent on `idempotency_key`: a second call returns the first call's follow-up
    and run, and appends nothing.
    """
    if idempotency_key:
        existing = TaskFollowUp.objects.select_related("run").filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return FollowUpResult(run=existing.run, followup=existing, resumed=existing.run.resume_from_id is not None, created=False)
    try:
        with transaction.atomic():
            # Lock the task so two follow-ups to a finished run make one new run, not two.
            Task.objects.select_for_update().get(pk=task.pk)
            run = current_run(task)
            resumed = False
            if run is None or run.is_terminal:
                run = TaskRun.objects.create(task=task, resume_from=run)
                resumed = run.resume_from_id is not None
            followup = TaskFollowUp.objects.create(
                run=run,
                text=text,
                author_slack_user_id=author_slack_user_id or "",
                author_name=author_name or "",
                idempotency_key=idempotency_key or None,
            )
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = TaskFollowUp.objects.select_related("run").get(idempotency_key=idempotency_key)
        return FollowUpResult(run=existing.run, followup=existing, resumed=existing.run.resume_from_id is not None, created=False)
    return FollowUpResult(run=run, followup=followup, resumed=resumed, created=True)
