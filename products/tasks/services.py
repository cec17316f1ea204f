"""Creating tasks, appending follow-ups and moving runs through their statuses; the only
module other products call to change tasks (it also holds the reads the page and API share).

`create_task` and `add_followup` are idempotent on a caller-supplied key, because their callers
(Temporal activities) can be retried or replayed: the unique constraint on
`idempotency_key` decides the race, and the loser reads the winner's row.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from products.accounts.facade import Project

from .models import Task, TaskFollowUp, TaskRun
from .runs import create_run, notify_workflow, record_status_change


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
            run = create_run(task)
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
                run = create_run(task, resume_from=run)
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


# --- Run status: reported by task runners ------------------------------------------


class RunStatusError(Exception):
    """Base of the refusals of `update_run_status`; `code` is what API callers branch on."""

    code = "run_status_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownRunStatus(RunStatusError):
    """The requested status is not one a runner may report (bad input)."""

    code = "invalid_status"


class RunAlreadyFinished(RunStatusError):
    """The run is completed, failed, cancelled or quota_limited; finished runs are never reopened."""

    code = "run_finished"


class TransitionNotAllowed(RunStatusError):
    """The run's current status cannot move to the requested one (e.g. queued -> completed)."""

    code = "transition_not_allowed"


# Which statuses a runner may move a run to, from each non-terminal status. A finished
# run is never reopened: new work on it is a new run that `resume_from`s it.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskRun.Status.QUEUED: frozenset({TaskRun.Status.IN_PROGRESS, TaskRun.Status.CANCELLED, TaskRun.Status.FAILED}),
    TaskRun.Status.IN_PROGRESS: frozenset(
        {TaskRun.Status.COMPLETED, TaskRun.Status.FAILED, TaskRun.Status.CANCELLED}
    ),
}
REPORTABLE_STATUSES: tuple[str, ...] = tuple(
    s.value for s in TaskRun.Status if any(s in targets for targets in ALLOWED_TRANSITIONS.values())
)


def update_run_status(run: TaskRun, status: str) -> TaskRun:
    """Move `run` to `status` if the transition is allowed, and return the updated run.

    The run is re-read under a row lock, so of two runners racing to start the same
    queued run exactly one succeeds; the other gets `TransitionNotAllowed`.
    Raises `UnknownRunStatus`, `RunAlreadyFinished` or `TransitionNotAllowed`; nothing
    is written when it raises.
    """
    if status not in REPORTABLE_STATUSES:
        raise UnknownRunStatus(
            f"Unknown status {status!r}; a runner may report one of: {', '.join(REPORTABLE_STATUSES)}."
        )
    with transaction.atomic():
        locked = TaskRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_terminal:
            raise RunAlreadyFinished(
                f"Run {locked.pk} is already {locked.status} and cannot change; "
                "a follow-up starts a new run that resumes it."
            )
        if status not in ALLOWED_TRANSITIONS[locked.status]:
            allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[locked.status]))
            raise TransitionNotAllowed(
                f"Run {locked.pk} is {locked.status} and cannot move to {status}; allowed: {allowed}."
            )
        now = timezone.now()
        locked.status = status
        fields = ["status", "updated_at"]
        if status == TaskRun.Status.IN_PROGRESS:
            locked.heartbeat_at = now  # an external run started this way is watched for heartbeats too
            fields.append("heartbeat_at")
        if locked.is_terminal:
            locked.finished_at = now
            fields.append("finished_at")
        locked.save(update_fields=fields)
        record_status_change(locked, "reported through the API")
        notify_workflow(locked.pk)
    return locked


# --- Reading: the task page and the REST API ----------------------------------------


def task_page_url(task_id: int) -> str:
    """Absolute link to the task's page (the one posted to Slack)."""
    return f"{settings.SITE_URL}/tasks/{task_id}/"


def project_tasks(project: Project, status: str | None = None) -> QuerySet[Task]:
    """The project's tasks, newest first, each annotated with `latest_run_id`.

    `status` keeps only tasks whose latest run has that status; callers validate it
    against `TaskRun.Status` first.
    """
    latest = TaskRun.objects.filter(task=OuterRef("pk")).order_by("-created_at", "-id")
    qs = Task.objects.filter(project=project).annotate(
        latest_run_id=Subquery(latest.values("id")[:1]),
        latest_run_status=Subquery(latest.values("status")[:1]),
    )
    if status is not None:
        qs = qs.filter(latest_run_status=status)
    return qs.order_by("-created_at", "-id")


def attach_latest_runs(tasks: list[Task]) -> list[Task]:
    """Set `task.latest_run` on each task of `project_tasks` with one query for all of them."""
    runs = TaskRun.objects.in_bulk([t.latest_run_id for t in tasks if t.latest_run_id is not None])
    for task in tasks:
        task.latest_run = runs.get(task.latest_run_id)
    return tasks


def task_with_history(tasks: QuerySet[Task], task_id: int, with_events: bool = False) -> Task | None:
    """The task `task_id` from `tasks` with its runs (oldest first) and their follow-ups prefetched, or None.

    `with_events` also prefetches each run's history (`TaskRunEvent`s, oldest first), for the task page.
    """
    runs = TaskRun.objects.order_by("created_at", "id").prefetch_related("followups")
    if with_events:
        runs = runs.prefetch_related("events")
    return (
        tasks.select_related("project", "project__organization")
        .prefetch_related(Prefetch("runs", queryset=runs, to_attr="history"))
        .filter(pk=task_id)
        .first()
    )
