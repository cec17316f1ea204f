"""Activities of the task-run workflow: thin adapters from Temporal to the product facades.

Each activity takes one dataclass from `types`, makes one call into a facade (the tasks
product for the run, the agent for a turn, the Slack app for the thread) and returns
one dataclass. The facades' typed errors become Temporal's retry behaviour here:

- `RunNotFound` (the run or its task was deleted): non-retryable `RunNotFound`.
- `AgentRefused` (the gateway refused for good, a 4xx other than 429): non-retryable
  `AgentRefused`; the workflow fails the run as an agent error.
- `AgentQuotaExceeded` (the gateway's 429): a result, not an error: the run ends `quota_limited`.
- `AgentUnavailable` (gateway down, 5xx, timeout) and anything else: raised as is, retried.
- The Slack app's errors: as in the mention workflow (`SlackRateLimited` waits for
  Retry-After; what no retry fixes is non-retryable).

A helper thread heartbeats while an activity runs (the mention workflow's), so a worker
killed mid-step is noticed within the heartbeat timeout and the step retried elsewhere.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from products.agent import facade as agent
from products.slack_app import facade as slack
from products.tasks import facade as tasks
from temporal.db import activity_finished, activity_started, release_connections
from temporal.heartbeat import heartbeating

from .constants import (
    AGENT_REFUSED_ERROR,
    ANSWER_TASK_RUN_ACTIVITY,
    FINISH_TASK_RUN_ACTIVITY,
    INTEGRATION_NOT_FOUND_ERROR,
    LOAD_TASK_RUN_ACTIVITY,
    POST_RUN_REPLY_ACTIVITY,
    REPORT_RUN_OUTCOME_ACTIVITY,
    RUN_NOT_FOUND_ERROR,
    SHOW_RUN_STATUS_ACTIVITY,
    SLACK_PERMANENT_ERROR,
    SLACK_RATE_LIMITED_ERROR,
    START_TASK_RUN_ACTIVITY,
    task_run_workflow_id,
)
from .types import (
    AnswerInput,
    AnswerResult,
    ConversationMessage,
    FinishInput,
    FinishResult,
    PostReplyInput,
    Reported,
    RunRef,
    RunState,
    ShowStatusInput,
    SlackTarget,
)

F = TypeVar("F", bound=Callable)


def _django_activity(fn: F) -> F:
    """Run `fn` with fresh database connections, heartbeating, and the facades' errors mapped to Temporal's."""

    @functools.wraps(fn)
    def wrapper(inp):
        activity_started()
        try:
            with heartbeating():
                return fn(inp)
        except tasks.RunNotFound as error:
            raise ApplicationError(f"{fn.__name__}: {error}", type=RUN_NOT_FOUND_ERROR, non_retryable=True) from error
        except agent.AgentRefused as error:
            raise ApplicationError(str(error) or "The model refused the request", type=AGENT_REFUSED_ERROR, non_retryable=True) from error
        except slack.MentionStepError as error:
            mapped = _slack_error(fn.__name__, error)
            if mapped is None:
                raise
            raise mapped from error
        finally:
            activity_finished()

    return wrapper  # type: ignore[return-value]


def _slack_error(name: str, error: slack.MentionStepError) -> ApplicationError | None:
    """The Temporal form of a Slack app error (as in the mention workflow); None: raise it as is (retried)."""
    if isinstance(error, slack.SlackRateLimited):
        return ApplicationError(
            f"Slack rate limited {name}; retrying in {error.retry_after}s",
            type=SLACK_RATE_LIMITED_ERROR,
            next_retry_delay=timedelta(seconds=error.retry_after),
        )
    if isinstance(error, slack.IntegrationGone):
        return ApplicationError(f"{name}: {error}", type=INTEGRATION_NOT_FOUND_ERROR, non_retryable=True)
    if isinstance(error, slack.TaskGone):
        return ApplicationError(f"{name}: {error}", type=RUN_NOT_FOUND_ERROR, non_retryable=True)
    if not error.retryable:
        return ApplicationError(f"{name}: {error}", type=SLACK_PERMANENT_ERROR, non_retryable=True)
    return None


def _state(run: tasks.RunSnapshot) -> RunState:
    return RunState(
        run_id=run.run_id,
        status=run.status,
        backend=run.backend,
        progress=run.progress,
        summary=run.summary,
        pr_url=run.pr_url,
        error=run.error,
        error_kind=run.error_kind,
        is_terminal=run.is_terminal,
    )


def _target(target: SlackTarget) -> slack.RunReportTarget:
    return slack.RunReportTarget(
        integration_id=target.integration_id,
        run_id=target.run_id,
        key=task_run_workflow_id(target.run_id),
        channel=target.channel,
        thread_ts=target.thread_ts,
        mention_ts=target.mention_ts,
        status_ts=target.status_ts,
    )


def _reported(report: slack.RunReport) -> Reported:
    return Reported(ts=report.ts, stopped=report.stopped)


# --- The run ---------------------------------------------------------------------------------


@activity.defn(name=LOAD_TASK_RUN_ACTIVITY)
@_django_activity
def load_task_run_activity(inp: RunRef) -> RunState:
    """Read the run (external runs: failing it first if its runner stopped heartbeating)."""
    return _state(tasks.fail_if_stale(inp.run_id) if inp.check_stale else tasks.get_run(inp.run_id))


@activity.defn(name=START_TASK_RUN_ACTIVITY)
@_django_activity
def start_task_run_activity(inp: RunRef) -> RunState:
    """Move a built-in run from queued to in progress (idempotent)."""
    return _state(tasks.start_run(inp.run_id))


@activity.defn(name=FINISH_TASK_RUN_ACTIVITY)
@_django_activity
def finish_task_run_activity(inp: FinishInput) -> FinishResult:
    """Finish the run (first finish wins), unless follow-ups newer than `unless_followups_after` wait for an answer.

    The check and the finish are not atomic: a follow-up stored in between lands on a
    finished run and waits for the next mention (the tasks product resumes the run then).
    """
    if inp.unless_followups_after is not None and tasks.followups_since(inp.run_id, inp.unless_followups_after):
        return FinishResult(finished=False, state=_state(tasks.get_run(inp.run_id)))
    run = tasks.finish_run(
        inp.run_id, status=inp.status, summary=inp.summary, pr_url=inp.pr_url, error=inp.error, error_kind=inp.error_kind
    )
    return FinishResult(finished=True, state=_state(run))


@activity.defn(name=ANSWER_TASK_RUN_ACTIVITY)
@_django_activity
def answer_task_run_activity(inp: AnswerInput) -> AnswerResult:
    """One agent turn: the task (or the follow-ups after `cursor`) put to the model through the gateway."""
    run = tasks.get_run(inp.run_id)
    followups = tasks.followups_since(inp.run_id, inp.cursor)
    earlier = [agent.AgentMessage(role=m.role, content=m.content) for m in inp.earlier]
    if earlier and not followups:  # nothing new to answer (the follow-ups seen waiting are gone): the last answer stands
        return AnswerResult(quota_limited=False, text=earlier[-1].content, cursor=inp.cursor, conversation=list(inp.earlier))
    conversation = agent.build_conversation(run, followups, earlier)
    # The model call takes seconds to minutes: hold no database session meanwhile, so a
    # worker's many agent turns in flight (TEMPORAL_ACTIVITY_THREADS) are not as many sessions.
    release_connections()
    try:
        reply = agent.answer(run, conversation)
    except agent.AgentQuotaExceeded as exceeded:
        return AnswerResult(quota_limited=True, message=getattr(exceeded, "message", "") or str(exceeded))
    return AnswerResult(
        quota_limited=False,
        text=reply.text,
        model=reply.model,
        demo=reply.demo,
        cursor=max([inp.cursor, *(f.id for f in followups)]),
        conversation=[ConversationMessage(role=m.role, content=m.content) for m in conversation]
        + [ConversationMessage(role="assistant", content=reply.text)],
    )


# --- Slack -----------------------------------------------------------------------------------


@activity.defn(name=SHOW_RUN_STATUS_ACTIVITY)
@_django_activity
def show_run_status_activity(inp: ShowStatusInput) -> Reported:
    """Post the run's status message once, or edit it in place."""
    return _reported(slack.show_run_status(_target(inp.target)))


@activity.defn(name=POST_RUN_REPLY_ACTIVITY)
@_django_activity
def post_run_reply_activity(inp: PostReplyInput) -> Reported:
    """Post an answer given before the run ended, once."""
    return _reported(slack.post_run_reply(_target(inp.target), step=inp.step, text=inp.text))


@activity.defn(name=REPORT_RUN_OUTCOME_ACTIVITY)
@_django_activity
def report_run_outcome_activity(inp: ShowStatusInput) -> Reported:
    """Tell the thread how the run ended: status edit, reaction swap, the outcome posted once."""
    return _reported(slack.report_run_outcome(_target(inp.target)))


ACTIVITIES: list[Callable] = [
    load_task_run_activity,
    start_task_run_activity,
    finish_task_run_activity,
    answer_task_run_activity,
    show_run_status_activity,
    post_run_reply_activity,
    report_run_outcome_activity,
]
