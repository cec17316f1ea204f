"""Activities of the Slack mention workflow: thin adapters from Temporal to `products.slack_app.facade`.

Each activity takes one dataclass from `types`, makes one call to the Slack app's
facade (where the mention logic lives) and returns one dataclass. This module only
translates: the facade's typed errors become Temporal's retry behaviour here, in one place.

- `SlackRateLimited`: the attempt fails with `next_retry_delay` = Retry-After, so the
  worker thread is not held while Slack's limit resets.
- An error no retry can fix (`retryable = False`: integration or task deleted, Slack
  refusing for good) becomes a non-retryable `ApplicationError` of a stable type.
- Anything else (Slack 5xx, `QuotaStateUnavailable` when Redis is down) raises as is and
  Temporal retries: the gates never fail open.

While an activity runs, a helper thread heartbeats (temporal/heartbeat.py), so a worker killed mid-step is
noticed after the workflow's heartbeat timeout (not the minute-long start-to-close) and
the step retried elsewhere; the facade's "post once" makes that retry post nothing twice.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from products.slack_app import facade as slack
from temporal.db import activity_finished, activity_started
from temporal.heartbeat import heartbeating
from temporal.task_run.starting import deliver_followup, start_task_run_workflow
from temporal.task_run.types import TaskRunWorkflowInput

from .constants import (
    CREATE_TASK_FOR_REPO_ACTIVITY,
    ENFORCE_BILLING_QUOTA_ACTIVITY,
    FIND_THREAD_TASK_ACTIVITY,
    FORWARD_FOLLOWUP_ACTIVITY,
    HANDLE_MENTION_ACTIVITY,
    INTEGRATION_NOT_FOUND_ERROR,
    POST_REPO_PICKER_ACTIVITY,
    POST_THREAD_MESSAGE_ACTIVITY,
    ROUTE_REPOSITORY_ACTIVITY,
    SLACK_PERMANENT_ERROR,
    SLACK_RATE_LIMITED_ERROR,
    TASK_NOT_FOUND_ERROR,
    UNKNOWN_MESSAGE_KIND_ERROR,
)
from .types import (
    CreateTaskInput,
    CreateTaskResult,
    EnforceQuotaInput,
    FindThreadTaskInput,
    ForwardFollowupInput,
    ForwardFollowupResult,
    HandleMentionInput,
    HandleMentionResult,
    PostedMessage,
    PostRepoPickerInput,
    PostThreadMessageInput,
    QuotaGateResult,
    RouteRepositoryInput,
    RouteRepositoryResult,
    ThreadTaskResult,
)

F = TypeVar("F", bound=Callable)

_NON_RETRYABLE_TYPES: dict[type[slack.MentionStepError], str] = {
    slack.IntegrationGone: INTEGRATION_NOT_FOUND_ERROR,
    slack.TaskGone: TASK_NOT_FOUND_ERROR,
    slack.UnknownMessageKind: UNKNOWN_MESSAGE_KIND_ERROR,
    slack.SlackRefused: SLACK_PERMANENT_ERROR,
}


def _to_application_error(name: str, error: slack.MentionStepError) -> ApplicationError | None:
    """The Temporal form of a facade error; None: raise it as is (Temporal retries with backoff)."""
    if isinstance(error, slack.SlackRateLimited):
        return ApplicationError(
            f"Slack rate limited {name}; retrying in {error.retry_after}s",
            type=SLACK_RATE_LIMITED_ERROR,
            next_retry_delay=timedelta(seconds=error.retry_after),
        )
    if not error.retryable:
        error_type = next((t for cls, t in _NON_RETRYABLE_TYPES.items() if isinstance(error, cls)), type(error).__name__)
        return ApplicationError(f"{name}: {error}", type=error_type, non_retryable=True)
    return None


def _django_activity(fn: F) -> F:
    """Run `fn` with fresh database connections, heartbeating, and the facade's errors mapped to Temporal's."""

    @functools.wraps(fn)
    def wrapper(inp):
        activity_started()
        try:
            with heartbeating():
                return fn(inp)
        except slack.MentionStepError as error:
            mapped = _to_application_error(fn.__name__, error)
            if mapped is None:
                raise
            raise mapped from error
        finally:
            activity_finished()

    return wrapper  # type: ignore[return-value]


def _workflow_id(channel: str, thread_ts: str) -> str:
    """The running workflow's id (the key of its messages); outside a worker, a key for the thread."""
    if activity.in_activity():
        return activity.info().workflow_id
    return f"thread:{channel}:{thread_ts}"


def _request(inp: CreateTaskInput | ForwardFollowupInput | HandleMentionInput) -> slack.MentionRequest:
    return slack.MentionRequest(
        integration_id=inp.integration_id,
        workflow_id=inp.workflow_id,
        channel=inp.channel,
        thread_ts=inp.thread_ts,
        event_ts=inp.event_ts,
        user=inp.user,
        text=inp.text,
    )


def _start_task_run(run_id: int, integration_id: int, channel: str, thread_ts: str, mention_ts: str) -> None:
    """Start the run's task-run workflow (a no-op if it exists) on this worker's task queue.

    Done from the activity, not as a workflow step, so the mention workflow's command
    sequence (and its recorded histories) is unchanged. Raises `TemporalUnavailable` if
    Temporal cannot be reached: the activity is retried (its facade call is idempotent),
    so a created run never goes without its workflow. Called outside a worker (the body
    run directly, as the unit tests do) there is no task queue to start it on: nothing is started.
    """
    if not activity.in_activity():
        return
    task_queue = activity.info().task_queue
    start_task_run_workflow(
        TaskRunWorkflowInput(
            run_id=run_id, integration_id=integration_id, channel=channel, thread_ts=thread_ts, mention_ts=mention_ts
        ),
        task_queue=task_queue,
    )


# --- Activities ------------------------------------------------------------------------------


@activity.defn(name=ENFORCE_BILLING_QUOTA_ACTIVITY)
@_django_activity
def enforce_billing_quota_activity(inp: EnforceQuotaInput) -> QuotaGateResult:
    """Refuse the mention (denial posted in the thread) if the project is out of AI credits."""
    limited = slack.enforce_quota(
        inp.integration_id,
        workflow_id=_workflow_id(inp.channel, inp.thread_ts),
        channel=inp.channel,
        thread_ts=inp.thread_ts,
        user=inp.user,
    )
    return QuotaGateResult(limited=limited)


@activity.defn(name=FIND_THREAD_TASK_ACTIVITY)
@_django_activity
def find_thread_task_activity(inp: FindThreadTaskInput) -> ThreadTaskResult:
    """Say which task, if any, the Slack thread is tied to."""
    thread = slack.find_thread_task(inp.integration_id, channel=inp.channel, thread_ts=inp.thread_ts)
    return ThreadTaskResult(task_id=thread.task_id, workflow_id=thread.workflow_id)


@activity.defn(name=ROUTE_REPOSITORY_ACTIVITY)
@_django_activity
def route_repository_activity(inp: RouteRepositoryInput) -> RouteRepositoryResult:
    """Choose the repository from the text and the configured repositories (asking the routing model if unclear)."""
    workflow_id = activity.info().workflow_id if activity.in_activity() else ""
    choice = slack.choose_repository(inp.integration_id, text=inp.text, workflow_id=workflow_id)
    return RouteRepositoryResult(
        repository=choice.repository,
        needs_picker=choice.needs_picker,
        repositories=list(choice.repositories),
        chosen_by_model=choice.chosen_by_model,
    )


@activity.defn(name=POST_REPO_PICKER_ACTIVITY)
@_django_activity
def post_repo_picker_activity(inp: PostRepoPickerInput) -> PostedMessage:
    """Ask in the thread which repository to use (buttons signal the workflow), once."""
    ts = slack.post_repo_picker(
        inp.integration_id,
        workflow_id=inp.workflow_id,
        channel=inp.channel,
        thread_ts=inp.thread_ts,
        repositories=list(inp.repositories),
    )
    return PostedMessage(ts=ts)


@activity.defn(name=POST_THREAD_MESSAGE_ACTIVITY)
@_django_activity
def post_thread_message_activity(inp: PostThreadMessageInput) -> PostedMessage:
    """Post one of the fixed messages (picker timeout, apology) in the thread, once."""
    ts = slack.post_fixed_message(
        inp.integration_id,
        workflow_id=_workflow_id(inp.channel, inp.thread_ts),
        channel=inp.channel,
        thread_ts=inp.thread_ts,
        kind=inp.kind,
    )
    return PostedMessage(ts=ts)


@activity.defn(name=CREATE_TASK_FOR_REPO_ACTIVITY)
@_django_activity
def create_task_for_repo_activity(inp: CreateTaskInput) -> CreateTaskResult:
    """Create the mention's task, tie the thread to it and say "On it", exactly once per workflow."""
    return _task_created(slack.create_task_for_mention(_request(inp), repository=inp.repository), inp)


@activity.defn(name=FORWARD_FOLLOWUP_ACTIVITY)
@_django_activity
def forward_followup_activity(inp: ForwardFollowupInput) -> ForwardFollowupResult:
    """Append a later mention in the thread to the task's current run (resuming a finished run)."""
    return _followup_forwarded(slack.forward_followup(_request(inp), task_id=inp.task_id), inp)


def _followup_forwarded(done: slack.ForwardedFollowup, inp: ForwardFollowupInput | HandleMentionInput) -> ForwardFollowupResult:
    """Start or tell the run a forwarded follow-up went to; the activity's result."""
    if done.forwarded and done.run_id is not None:
        # A resumed task is a new run: its own workflow. A run still going gets the
        # follow-up signalled (its workflow is started too, should an earlier start have been lost).
        _start_task_run(done.run_id, inp.integration_id, inp.channel, inp.thread_ts, inp.event_ts)
        if not done.resumed and activity.in_activity():
            deliver_followup(done.run_id)
    return ForwardFollowupResult(forwarded=done.forwarded, resumed=done.resumed, denied=done.denied, run_id=done.run_id)


def _task_created(made: slack.MentionTask, inp: CreateTaskInput | HandleMentionInput) -> CreateTaskResult:
    """Start the created task's run workflow; the activity's result."""
    if made.run_id is not None and not made.denied:
        _start_task_run(made.run_id, inp.integration_id, inp.channel, inp.thread_ts, inp.event_ts)
    return CreateTaskResult(task_id=made.task_id, run_id=made.run_id, created=made.created, denied=made.denied)


@activity.defn(name=HANDLE_MENTION_ACTIVITY)
@_django_activity
def handle_mention_activity(inp: HandleMentionInput) -> HandleMentionResult:
    """The usual path in one step: quota gate, the thread's task (a follow-up), the repository, the task and its run.

    Stops before the picker (`needs_picker`): the workflow posts it and waits for the answer.
    """
    done = slack.handle_mention(_request(inp))
    if done.limited:
        return HandleMentionResult(limited=True)
    if done.followup is not None:
        return HandleMentionResult(followup_task_id=done.followup_task_id, followup=_followup_forwarded(done.followup, inp))
    if done.picker is not None:
        return HandleMentionResult(needs_picker=True, repositories=list(done.picker))
    assert done.task is not None
    return HandleMentionResult(repository=done.repository, created=_task_created(done.task, inp))
