"""Activities of the task-run workflow: thin adapters from Temporal to the product facades.

Each activity takes one dataclass from `types` and returns one. A run's steps that always
follow each other and are idempotent together are one activity (each one a task-queue round
trip, three history events and a workflow task fewer): `sync_task_run_activity` moves the
run (start, or fail it when its runner went quiet) and then posts or edits its status
message; `conclude_task_run_activity` finishes the run and then reports the outcome in the
thread. Each calls the tasks facade first (idempotent: a retry finds the run already
started or finished), then the Slack app's (every post at most once through its post-once
ledger), handing it the run just read so it is not read again. A Slack refusal no retry
fixes is logged there and the activity still succeeds (the run's change is kept); what a
retry may fix is raised, so the whole activity is retried. The facades' typed errors
become Temporal's retry behaviour here:

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
import logging
from collections.abc import Callable
from dataclasses import replace
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
    CONCLUDE_TASK_RUN_ACTIVITY,
    INTEGRATION_NOT_FOUND_ERROR,
    POST_RUN_REPLY_ACTIVITY,
    RUN_NOT_FOUND_ERROR,
    SLACK_PERMANENT_ERROR,
    SLACK_RATE_LIMITED_ERROR,
    STATUS_COMPLETED,
    SYNC_TASK_RUN_ACTIVITY,
    task_run_workflow_id,
)
from .types import (
    AnswerInput,
    AnswerResult,
    ConcludeInput,
    ConcludeResult,
    ConversationMessage,
    FinishInput,
    PostReplyInput,
    Reported,
    RunState,
    SlackTarget,
    SyncInput,
    SyncResult,
    shown_of,
)

logger = logging.getLogger(__name__)

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


def _report_best_effort(target: SlackTarget, step) -> slack.RunReport | None:
    """Run one Slack report step; None if Slack refused it for good (logged: the run goes on without it).

    Errors a retry may fix (rate limit, Slack unreachable) and the run gone are raised.
    """
    try:
        return step(_target(target))
    except slack.MentionStepError as error:
        mapped = _slack_error("report", error)
        if mapped is None or mapped.type in (SLACK_RATE_LIMITED_ERROR, RUN_NOT_FOUND_ERROR):
            raise
        logger.warning("Slack refused the report of run %s for good: %s", target.run_id, error)
        return None


# --- The run ---------------------------------------------------------------------------------


@activity.defn(name=SYNC_TASK_RUN_ACTIVITY)
@_django_activity
def sync_task_run_activity(inp: SyncInput) -> SyncResult:
    """Start the run (built in) or fail it if its runner went quiet (external), then show it in the status message.

    The status message is posted once, or edited, only when what it would show differs
    from `inp.shown` and the run is still under way (the conclusion edits it last).
    """
    run_id = inp.target.run_id
    if inp.start:
        run = tasks.start_run(run_id)
    elif inp.check_stale:
        run = tasks.fail_if_stale(run_id)
    else:
        run = tasks.get_run(run_id)
    state = _state(run)
    result = SyncResult(state=state, shown=inp.shown, status_ts=inp.target.status_ts)
    if not inp.report or state.is_terminal or shown_of(state) == inp.shown:
        return result
    result.shown = shown_of(state)  # a refusal for good is not retried at every poll
    report = _report_best_effort(inp.target, lambda target: slack.show_run_status(target, run=run))
    if report is not None:
        result.stopped = report.stopped
        result.status_ts = report.ts or inp.target.status_ts
    return result


@activity.defn(name=CONCLUDE_TASK_RUN_ACTIVITY)
@_django_activity
def conclude_task_run_activity(inp: ConcludeInput) -> ConcludeResult:
    """Finish the run (first finish wins; not while follow-ups newer than the cursor wait), then report how it ended.

    With `inp.finish` None the run has ended already (an external runner finished it) and
    is only reported. Reporting: the status message edited a last time, 👀 swapped, the
    result or the failure posted once.
    """
    return _conclude(inp)


def _conclude(inp: ConcludeInput) -> ConcludeResult:
    finish = inp.finish
    if finish is None:
        run = tasks.get_run(inp.target.run_id)
    else:
        run = tasks.finish_run(
            finish.run_id, status=finish.status, summary=finish.summary, pr_url=finish.pr_url, error=finish.error,
            error_kind=finish.error_kind, unless_followups_after=finish.unless_followups_after,
        )
        if not run.is_terminal:  # follow-ups wait: the agent answers them first
            return ConcludeResult(finished=False, state=_state(run))
    result = ConcludeResult(finished=True, state=_state(run))
    if not inp.report:
        return result
    report = _report_best_effort(inp.target, lambda target: slack.report_run_outcome(target, run=run))
    if report is not None:
        result.stopped = report.stopped
        result.reported = not report.stopped
    return result


@activity.defn(name=ANSWER_TASK_RUN_ACTIVITY)
@_django_activity
def answer_task_run_activity(inp: AnswerInput) -> AnswerResult:
    """One agent turn: the task (or the follow-ups after `cursor`) put to the model through the gateway.

    With `inp.conclude`, the turn then concludes the run as `conclude_task_run_activity` would
    (finish with the answer unless follow-ups wait, report it in the thread), so the result
    goes out as soon as the model has answered. A run that is already over (an earlier attempt
    finished it and died reporting) is concluded as it stands: the model is not asked again.
    """
    run = tasks.get_run(inp.run_id)
    if inp.conclude is not None and run.is_terminal:
        return AnswerResult(
            quota_limited=False, text=run.summary, cursor=inp.cursor, conversation=list(inp.earlier),
            concluded=_conclude_best_effort(replace(inp.conclude, finish=None)),
        )
    followups = tasks.followups_since(inp.run_id, inp.cursor, check_run=False)
    earlier = [agent.AgentMessage(role=m.role, content=m.content) for m in inp.earlier]
    if earlier and not followups:  # nothing new to answer (the follow-ups seen waiting are gone): the last answer stands
        return _concluding(inp, AnswerResult(quota_limited=False, text=earlier[-1].content, cursor=inp.cursor, conversation=list(inp.earlier)))
    conversation = agent.build_conversation(run, followups, earlier)
    # The model call takes seconds to minutes: hold no database session meanwhile, so a
    # worker's many agent turns in flight (TEMPORAL_ACTIVITY_THREADS) are not as many sessions.
    release_connections()
    try:
        reply = agent.answer(run, conversation)
    except agent.AgentQuotaExceeded as exceeded:
        return AnswerResult(quota_limited=True, message=getattr(exceeded, "message", "") or str(exceeded))
    return _concluding(inp, AnswerResult(
        quota_limited=False,
        text=reply.text,
        model=reply.model,
        demo=reply.demo,
        cursor=max([inp.cursor, *(f.id for f in followups)]),
        conversation=[ConversationMessage(role=m.role, content=m.content) for m in conversation]
        + [ConversationMessage(role="assistant", content=reply.text)],
    ))


def _concluding(inp: AnswerInput, answered: AnswerResult) -> AnswerResult:
    """`answered`, and with `inp.conclude` the run finished with it and reported (what the conclude step would do)."""
    if inp.conclude is not None:
        finish = FinishInput(
            run_id=inp.run_id, status=STATUS_COMPLETED, summary=answered.text, unless_followups_after=answered.cursor
        )
        answered.concluded = _conclude_best_effort(replace(inp.conclude, finish=finish))
    return answered


def _conclude_best_effort(inp: ConcludeInput) -> ConcludeResult | None:
    """`_conclude`, or None if it failed: the answer is kept (never asked for again) and the workflow's conclude step retries.

    The run gone (`RunNotFound`) is raised: there is nothing left to conclude.
    """
    try:
        return _conclude(inp)
    except tasks.RunNotFound:
        raise
    except Exception as error:  # noqa: BLE001 - Slack unavailable or rate limited, the database blinking: retried by the step
        logger.warning("Run %s answered; concluding it failed (the workflow's conclude step retries): %r", inp.target.run_id, error)
        return None


# --- Slack -----------------------------------------------------------------------------------


@activity.defn(name=POST_RUN_REPLY_ACTIVITY)
@_django_activity
def post_run_reply_activity(inp: PostReplyInput) -> Reported:
    """Post an answer given before the run ended, once."""
    return _reported(slack.post_run_reply(_target(inp.target), step=inp.step, text=inp.text))


ACTIVITIES: list[Callable] = [
    sync_task_run_activity,
    answer_task_run_activity,
    conclude_task_run_activity,
    post_run_reply_activity,
]
