"""A run's life after it is queued: started, reporting progress, finished, or lost; and the
external runners' side of it (claim, heartbeat, progress, follow-ups, finish).

Two kinds of callers change runs here:

- the task-processing workflow (through the facade: `start_run`, `record_progress`,
  `finish_run`, `fail_if_stale`), which works built-in runs itself and watches external
  ones. These are idempotent, because activities are retried: a second `finish_run` returns
  the first one's result unchanged.
- external runner processes (through the REST API in `api.py`: `claim_next_run`,
  `runner_heartbeat`, `runner_progress`, `runner_finish`), which must name themselves; only
  the runner that claimed a run may report on it. Refusals are `RunError`s, each with a
  stable `code` and the HTTP status the API answers with.

Every change takes the run's row lock first (`SELECT ... FOR UPDATE`), so a heartbeat and
the stale sweep, or a retried finish and the first one, never both win. Every status change
and progress line is appended to `TaskRunEvent`. Telling the workflow about a change
(`notify_workflow`) happens after the commit, never inside it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from products.billing.facade import credits_for_run

from .models import AgentBackend, AgentSettings, Task, TaskFollowUp, TaskRun, TaskRunEvent

logger = logging.getLogger(__name__)

Status = TaskRun.Status

AGENT_BACKEND_BUILTIN: str = AgentBackend.BUILTIN.value
AGENT_BACKEND_EXTERNAL: str = AgentBackend.EXTERNAL.value

PROGRESS_MAX_CHARS = 200
RUNNER_NAME_MAX_CHARS = 100
PR_URL_MAX_CHARS = 2000
SUMMARY_MAX_CHARS = 40_000
ERROR_MAX_CHARS = 10_000
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 120
# Usage events of a run are looked for from a little before the run was created (clock skew
# between the gateway and this process), so the scan stays on the project's recent events.
_USAGE_CLOCK_MARGIN = timedelta(minutes=5)

# What a runner may finish a run with. `cancelled` and `quota_limited` are the server's to decide.
RUNNER_FINISH_STATUSES: tuple[str, ...] = (Status.COMPLETED.value, Status.FAILED.value)

# error_kind values this module sets (others, e.g. "agent_error", come from the workflow).
ERROR_KIND_RUNNER_LOST = "runner_lost"
ERROR_KIND_RUNNER_ERROR = "runner_error"
ERROR_KIND_AGENT_ERROR = "agent_error"
ERROR_KIND_QUOTA_LIMITED = "quota_limited"
ERROR_KIND_CANCELLED = "cancelled"


# --- What callers get back ------------------------------------------------------------


@dataclass(frozen=True)
class RunSnapshot:
    """A run as the workflow and the agent see it: plain values, never an ORM object."""

    run_id: int
    task_id: int
    project_id: int
    status: str
    backend: str
    description: str
    repository: str
    progress: str
    summary: str
    pr_url: str
    error: str
    error_kind: str
    is_terminal: bool

    @classmethod
    def of(cls, run: TaskRun) -> "RunSnapshot":
        """Precondition: `run.task` is loaded (or loadable)."""
        return cls(
            run_id=run.pk,
            task_id=run.task_id,
            project_id=run.task.project_id,
            status=str(run.status),
            backend=str(run.backend),
            description=run.task.description,
            repository=run.task.repository,
            progress=run.progress,
            summary=run.summary,
            pr_url=run.pr_url,
            error=run.error,
            error_kind=run.error_kind,
            is_terminal=run.is_terminal,
        )


@dataclass(frozen=True)
class FollowUpItem:
    id: int  # cursor: pass the last seen id to get later ones
    text: str
    author_name: str


@dataclass(frozen=True)
class ClaimedRun:
    """What a runner gets when it claims a run: the run, what it resumes, and the follow-ups so far."""

    run: TaskRun
    followups: list[TaskFollowUp]
    cursor: int  # the last follow-up's id (0 when there is none): pass it to `followups_since`


# --- Refusals ---------------------------------------------------------------------------


class RunError(Exception):
    """A refusal with a reason; `code` is what API callers branch on, `http_status` what they get."""

    code = "run_error"
    http_status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class RunNotFound(RunError):
    """No such run (deleted with its task), or not one of the caller's project."""

    code = "run_not_found"
    http_status = 404


class InvalidRunInput(RunError):
    """Bad input: an unknown status, a malformed URL, an empty line, a missing runner name."""

    code = "invalid_request"
    http_status = 400


class NotClaimant(RunError):
    """The run was not claimed by the runner asking (or by no runner at all)."""

    code = "not_claimant"
    http_status = 409


class RunFinished(RunError):
    """The run has finished; nothing more can be reported on it."""

    code = "run_finished"
    http_status = 409


class RunLost(RunError):
    """The run was failed because its runner stopped sending heartbeats; the runner's work is not taken."""

    code = "run_lost"
    http_status = 409


class FinishConflict(RunError):
    """The run already finished with a different result (a retried finish with the same result is fine)."""

    code = "finish_conflict"
    http_status = 409


# --- Creating runs (called by services.create_task / add_followup) ------------------------


def agent_backend_for(project_id: int) -> str:
    """Return the agent backend new runs of the project use: its AgentSettings, else the built-in agent."""
    backend = AgentSettings.objects.filter(project_id=project_id).values_list("backend", flat=True).first()
    return backend or AGENT_BACKEND_BUILTIN


def create_run(task: Task, resume_from: TaskRun | None = None) -> TaskRun:
    """Create a queued run of `task` on the project's current backend, with its first history entry.

    Precondition: called inside the caller's transaction.
    """
    run = TaskRun.objects.create(task=task, resume_from=resume_from, backend=agent_backend_for(task.project_id))
    note = f"resumes run #{resume_from.pk}" if resume_from is not None else ""
    _append(run, TaskRunEvent.Kind.STATUS, _status_text(Status.QUEUED, note or f"backend: {run.backend}"))
    return run


# --- The workflow's side (exported from the facade) ------------------------------------


def get_run(run_id: int) -> RunSnapshot:
    """Return the run's current state; raises `RunNotFound` if it no longer exists."""
    run = TaskRun.objects.select_related("task").filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"Run {run_id} does not exist (its task may have been deleted).")
    return RunSnapshot.of(run)


def start_run(run_id: int) -> RunSnapshot:
    """Move a queued built-in run to in_progress; a run already started or finished is left as it is.

    External runs are started by a runner's claim, never here: marking one in progress
    without a runner would only have it failed as lost later.
    """
    with transaction.atomic():
        run = _lock(run_id)
        if run.status == Status.QUEUED and run.backend == AGENT_BACKEND_BUILTIN:
            now = timezone.now()
            run.status = Status.IN_PROGRESS
            run.heartbeat_at = now
            run.save(update_fields=["status", "heartbeat_at", "updated_at"])
            _append(run, TaskRunEvent.Kind.STATUS, _status_text(Status.IN_PROGRESS, "built-in agent"), now)
    return RunSnapshot.of(run)


def record_progress(run_id: int, line: str) -> RunSnapshot:
    """Set the run's progress line (whitespace collapsed, cut to 200 characters) and append it to its history.

    Also counts as a sign of life (heartbeat). The same line twice in a row is recorded
    once (a retried report adds nothing); a blank line, or a finished run, changes nothing.
    """
    text = clean_progress_line(line)
    with transaction.atomic():
        run = _lock(run_id)
        if text and not run.is_terminal:
            _apply_progress(run, text)
    return RunSnapshot.of(run)


def finish_run(
    run_id: int, *, status: str, summary: str = "", pr_url: str = "", error: str = "", error_kind: str = "",
    unless_followups_after: int | None = None,
) -> RunSnapshot:
    """Finish the run with `status` (completed, failed, cancelled or quota_limited) and its result or error.

    Idempotent: a run that has already finished is returned unchanged (the first finish
    wins), so a retried activity never overwrites the result. With `unless_followups_after`
    (a follow-up cursor), a run with follow-ups newer than it is left unfinished and returned
    as it is (`is_terminal` False: the built-in agent answers them first); the check is made
    under the run's lock, but a follow-up is stored under its task's, so one stored just after
    the check lands on a finished run (and waits for the next mention, which resumes it).
    Raises `InvalidRunInput` for a status that is not terminal or a `pr_url` that is not an
    http(s) URL.
    """
    if status not in {s.value for s in TaskRun.TERMINAL_STATUSES}:
        terminal = ", ".join(sorted(s.value for s in TaskRun.TERMINAL_STATUSES))
        raise InvalidRunInput(f"A run finishes as one of: {terminal}; not {status!r}.", code="invalid_status")
    check_pr_url(pr_url)
    with transaction.atomic():
        run = _lock(run_id)
        if run.is_terminal:
            return RunSnapshot.of(run)
        if unless_followups_after is not None and TaskFollowUp.objects.filter(run_id=run_id, pk__gt=unless_followups_after).exists():
            return RunSnapshot.of(run)
        _apply_finish(run, status=status, summary=summary, pr_url=pr_url, error=error,
                      error_kind=error_kind or _default_error_kind(run, status))
    return RunSnapshot.of(run)


def fail_if_stale(run_id: int) -> RunSnapshot:
    """Fail an external in-progress run whose runner has gone quiet; any other run is returned unchanged.

    Quiet means no heartbeat (nor claim, nor progress) for `settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS`
    (default 120). The run becomes failed with error_kind "runner_lost"; the runner's later
    reports on it are refused (`RunLost`).
    """
    return _fail_if_stale(run_id)[0]


def followups_since(run_id: int, cursor: int = 0, limit: int | None = None, *, check_run: bool = True) -> list[FollowUpItem]:
    """Return the run's follow-ups with an id above `cursor`, oldest first (at most `limit` when given).

    Ids only grow within a task (follow-ups are appended under the task's row lock), so a
    caller that passes the last id it saw never misses one nor sees one twice.
    Raises `RunNotFound` if the run does not exist (not checked with `check_run=False`, for a
    caller that has just read the run: a deleted run then has no follow-ups).
    """
    if check_run and not TaskRun.objects.filter(pk=run_id).exists():
        raise RunNotFound(f"Run {run_id} does not exist (its task may have been deleted).")
    rows = TaskFollowUp.objects.filter(run_id=run_id, pk__gt=cursor).order_by("pk")
    if limit is not None:
        rows = rows[:limit]
    return [FollowUpItem(id=f.pk, text=f.text, author_name=f.author_name or f.author_slack_user_id) for f in rows]


def run_credits(run_id: int) -> Decimal:
    """Return the AI credits the run spent, from the gateway's usage events carrying its `$ai_run_id`."""
    run = TaskRun.objects.select_related("task").filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"Run {run_id} does not exist (its task may have been deleted).")
    return credits_of(run)


def credits_of(run: TaskRun) -> Decimal:
    """`run_credits` for a run already loaded (with its task)."""
    return Decimal(credits_for_run(run.task.project_id, run.pk, since=run.created_at - _USAGE_CLOCK_MARGIN))


# --- The external runners' side (the REST API) -------------------------------------------


def claim_next_run(project_id: int, runner: str) -> ClaimedRun | None:
    """Give `runner` the project's oldest queued external run, now in_progress and claimed by it; None if none is queued.

    `SELECT ... FOR UPDATE SKIP LOCKED`: a run another runner is claiming at this moment is
    skipped, not waited for, so two runners never get the same run and neither blocks the other.
    """
    runner = check_runner_name(runner)
    with transaction.atomic():
        run = (
            TaskRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("task", "resume_from")
            .filter(task__project_id=project_id, status=Status.QUEUED, backend=AGENT_BACKEND_EXTERNAL)
            .order_by("created_at", "id")
            .first()
        )
        if run is None:
            return None
        now = timezone.now()
        run.status = Status.IN_PROGRESS
        run.claimed_by = runner
        run.claimed_at = run.heartbeat_at = now
        run.save(update_fields=["status", "claimed_by", "claimed_at", "heartbeat_at", "updated_at"])
        _append(run, TaskRunEvent.Kind.STATUS, _status_text(Status.IN_PROGRESS, f"claimed by {runner}"), now)
        followups = list(TaskFollowUp.objects.filter(run=run).order_by("pk"))
    return ClaimedRun(run=run, followups=followups, cursor=followups[-1].pk if followups else 0)


def runner_heartbeat(project_id: int, run_id: int, runner: str) -> TaskRun:
    """Record that `runner` is still working the run it claimed."""
    with transaction.atomic():
        run = _claimed(project_id, run_id, runner)
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["heartbeat_at", "updated_at"])
    return run


def runner_progress(project_id: int, run_id: int, runner: str, line: str) -> TaskRun:
    """Record `runner`'s progress line on the run it claimed (also a heartbeat); see `record_progress`."""
    text = clean_progress_line(line)
    if not text:
        raise InvalidRunInput("`line` must contain some text.", code="invalid_line")
    with transaction.atomic():
        run = _claimed(project_id, run_id, runner)
        _apply_progress(run, text)
    return run


def runner_finish(
    project_id: int, run_id: int, runner: str, *, status: str, summary: str = "", pr_url: str = "", error: str = ""
) -> tuple[TaskRun, bool]:
    """Finish the run `runner` claimed; return it and whether this call changed it.

    A retried finish with the same content changes nothing (False). A run already finished
    differently is a `FinishConflict`; one failed because the runner went quiet is `RunLost`.
    """
    if status not in RUNNER_FINISH_STATUSES:
        raise InvalidRunInput(
            f"A runner finishes a run as {' or '.join(RUNNER_FINISH_STATUSES)}; not {status!r}.", code="invalid_status"
        )
    check_pr_url(pr_url)
    if status == Status.FAILED and not error.strip():
        raise InvalidRunInput("A failed run needs an `error` saying what went wrong (it is shown in the thread).",
                              code="missing_error")
    with transaction.atomic():
        run = _claimed(project_id, run_id, runner, allow_terminal=True)
        if run.is_terminal:
            if (run.status, run.summary, run.pr_url, run.error) == (status, summary, pr_url, error):
                return run, False
            raise FinishConflict(
                f"Run {run.pk} already finished as {run.status}"
                + (f" at {_hms(run.finished_at)}" if run.finished_at else "")
                + " with a different result; the first finish stands."
            )
        error_kind = ERROR_KIND_RUNNER_ERROR if status == Status.FAILED else ""
        _apply_finish(run, status=status, summary=summary, pr_url=pr_url, error=error, error_kind=error_kind)
    return run, True


def sweep_stale_runs() -> list[int]:
    """Fail every external in-progress run whose runner has gone quiet, tell each one's workflow; return their ids."""
    cutoff = timezone.now() - heartbeat_timeout()
    candidates = list(
        TaskRun.objects.filter(status=Status.IN_PROGRESS, backend=AGENT_BACKEND_EXTERNAL, heartbeat_at__lt=cutoff)
        .order_by("heartbeat_at")
        .values_list("pk", flat=True)
    ) + list(  # in progress without any heartbeat (moved there through the PATCH API by an older runner)
        TaskRun.objects.filter(status=Status.IN_PROGRESS, backend=AGENT_BACKEND_EXTERNAL, heartbeat_at__isnull=True,
                               updated_at__lt=cutoff).values_list("pk", flat=True)
    )
    failed = []
    for run_id in candidates:
        try:
            _, changed = _fail_if_stale(run_id)
        except RunNotFound:
            continue  # deleted meanwhile
        if changed:
            failed.append(run_id)
            notify_workflow(run_id)
    if failed:
        logger.warning("failed %d task run(s) whose runner stopped sending heartbeats: %s", len(failed), failed)
    return failed


# --- Input checks shared by the facade and the API ---------------------------------------


def clean_progress_line(line: str) -> str:
    """Collapse whitespace (newlines included) and cut to 200 characters, marking the cut with an ellipsis."""
    text = " ".join(str(line).split())
    return text if len(text) <= PROGRESS_MAX_CHARS else text[: PROGRESS_MAX_CHARS - 1] + "\u2026"


def check_runner_name(runner: str) -> str:
    """Return the runner's name stripped; raise `InvalidRunInput` for a blank, too long or multi-line one."""
    name = str(runner).strip()
    if not name or len(name) > RUNNER_NAME_MAX_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidRunInput(
            f"`runner` must name the runner: one line of 1 to {RUNNER_NAME_MAX_CHARS} characters.", code="invalid_runner"
        )
    return name


_url_validator = URLValidator(schemes=["http", "https"])


def check_pr_url(pr_url: str) -> None:
    """Raise `InvalidRunInput` unless `pr_url` is empty or an absolute http(s) URL of at most 2,000 characters."""
    if not pr_url:
        return
    if len(pr_url) > PR_URL_MAX_CHARS:
        raise InvalidRunInput(f"`pr_url` is longer than {PR_URL_MAX_CHARS} characters.", code="invalid_pr_url")
    try:
        _url_validator(pr_url)
    except ValidationError:
        raise InvalidRunInput(
            f"`pr_url` must be an absolute http:// or https:// URL, not {pr_url[:100]!r}.", code="invalid_pr_url"
        ) from None


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS", DEFAULT_HEARTBEAT_TIMEOUT_SECONDS)))


def notify_workflow(run_id: int) -> None:
    """After the current transaction commits, tell the run's workflow it changed (best effort; never raises).

    The workflow also polls, so a lost notification only delays it.
    """
    transaction.on_commit(lambda: _notify_now(run_id))


def _notify_now(run_id: int) -> None:
    # products reach Temporal only through temporal.client; notify_task_run never raises (best effort).
    from temporal.client import notify_task_run

    notify_task_run(run_id)


# --- Internals ------------------------------------------------------------------------------


def _lock(run_id: int) -> TaskRun:
    run = TaskRun.objects.select_for_update(of=("self",)).select_related("task").filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"Run {run_id} does not exist (its task may have been deleted).")
    return run


def _claimed(project_id: int, run_id: int, runner: str, allow_terminal: bool = False) -> TaskRun:
    """Lock the project's run `run_id` and check that `runner` holds it. Precondition: inside a transaction."""
    runner = check_runner_name(runner)
    run = (
        TaskRun.objects.select_for_update(of=("self",)).select_related("task")
        .filter(pk=run_id, task__project_id=project_id).first()
    )
    if run is None:
        raise RunNotFound("Run not found.")
    if not run.claimed_by:
        raise NotClaimant(f"Run {run.pk} has not been claimed by any runner; claim runs with POST .../task_runs/claim/.")
    if run.claimed_by != runner:
        raise NotClaimant(f"Run {run.pk} is claimed by another runner ({run.claimed_by!r}), not {runner!r}.")
    if run.error_kind == ERROR_KIND_RUNNER_LOST:
        raise RunLost(
            f"Run {run.pk} was failed at {_hms(run.finished_at)} because no heartbeat arrived for "
            f"{int(heartbeat_timeout().total_seconds())} s; its result is no longer taken. "
            "A follow-up in the thread starts a new run."
        )
    if run.is_terminal and not allow_terminal:
        raise RunFinished(f"Run {run.pk} is already {run.status}; stop working on it.")
    return run


def _fail_if_stale(run_id: int) -> tuple[RunSnapshot, bool]:
    with transaction.atomic():
        run = _lock(run_id)
        if run.status != Status.IN_PROGRESS or run.backend != AGENT_BACKEND_EXTERNAL:
            return RunSnapshot.of(run), False
        timeout = heartbeat_timeout()
        last_seen = run.heartbeat_at or run.claimed_at or run.updated_at
        if last_seen >= timezone.now() - timeout:
            return RunSnapshot.of(run), False
        who = f"The runner {run.claimed_by!r}" if run.claimed_by else "The runner"
        _apply_finish(
            run, status=Status.FAILED, summary="", pr_url="",
            error=(f"{who} stopped sending heartbeats: none since {_hms(last_seen)} "
                   f"(the limit is {int(timeout.total_seconds())} s)."),
            error_kind=ERROR_KIND_RUNNER_LOST,
        )
    return RunSnapshot.of(run), True


def _apply_progress(run: TaskRun, text: str) -> None:
    now = timezone.now()
    run.heartbeat_at = now
    fields = ["heartbeat_at", "updated_at"]
    if text != run.progress:
        run.progress = text
        fields.append("progress")
        _append(run, TaskRunEvent.Kind.PROGRESS, text, now)
    run.save(update_fields=fields)


def _apply_finish(run: TaskRun, *, status: str, summary: str, pr_url: str, error: str, error_kind: str) -> None:
    now = timezone.now()
    run.status = status
    run.summary, run.pr_url, run.error, run.error_kind = summary, pr_url, error, error_kind
    run.finished_at = now
    run.save(update_fields=["status", "summary", "pr_url", "error", "error_kind", "finished_at", "updated_at"])
    events = [TaskRunEvent(run=run, kind=TaskRunEvent.Kind.STATUS, text=_status_text(status, error_kind), created_at=now)]
    if summary or pr_url:
        events.append(TaskRunEvent(run=run, kind=TaskRunEvent.Kind.RESULT,
                                   text="\n".join(part for part in (summary, pr_url) if part), created_at=now))
    if error:
        events.append(TaskRunEvent(run=run, kind=TaskRunEvent.Kind.ERROR, text=error, created_at=now))
    TaskRunEvent.objects.bulk_create(events)  # one INSERT; ids (and so the history's order) follow the list


def record_status_change(run: TaskRun, note: str = "") -> None:
    """Append the run's (just saved) status to its history; for `services.update_run_status`."""
    _append(run, TaskRunEvent.Kind.STATUS, _status_text(run.status, note))


def _append(run: TaskRun, kind: str, text: str, at: datetime | None = None) -> None:
    TaskRunEvent.objects.create(run=run, kind=kind, text=text, created_at=at or timezone.now())


def _status_text(status: str, note: str = "") -> str:
    label = Status(status).label
    return f"{label} ({note})" if note else label


def _default_error_kind(run: TaskRun, status: str) -> str:
    if status == Status.QUOTA_LIMITED:
        return ERROR_KIND_QUOTA_LIMITED
    if status == Status.CANCELLED:
        return ERROR_KIND_CANCELLED
    if status == Status.FAILED:
        return ERROR_KIND_RUNNER_ERROR if run.backend == AGENT_BACKEND_EXTERNAL else ERROR_KIND_AGENT_ERROR
    return ""


def _hms(moment: datetime | None) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "?"
