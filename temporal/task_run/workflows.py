"""The task-run workflow: take one task run from `queued` to a final status and tell the Slack thread.

This module is deterministic workflow code run in Temporal's sandbox. Like the mention
workflow it imports nothing from Django nor the activities module: it calls activities
by their registered names (`constants.*_ACTIVITY`) with the dataclasses in `types`.

One execution per run (id `posthog-code-task-run-<run_id>`), started by the mention workflow's
activities when a task is created or a follow-up resumes a finished run:

1. The status message ("Working on it…") is posted once in the thread.
2. The run goes through its backend, decided when the run was created:
   - built in: the run is started, then the agent answers in turns (one model call each
     through the LLM gateway). Follow-ups stored while a turn is under way are answered
     in another turn (the earlier answer is posted as a reply); the last answer is the
     run's summary. The gateway's 429 ends the run `quota_limited`.
   - external: a runner claims the run and reports through the REST API, which signals
     `run_changed`; the workflow also polls every `POLL_INTERVAL` (a lost signal only
     delays), failing the run when its heartbeat is stale, and edits the status message
     on every new progress line.
3. The outcome is reported: the status message edited, 👀 swapped for the done/failed
   reaction, the result (a pull-request card when there is a URL) or the failure posted.

Every post goes through the Slack app's post-once ledger keyed by this workflow's id, so
retries and a worker killed mid-post never post twice. When Slack says the message or
thread is gone, reporting stops for good (`stopped`); the run still finishes.

Versioning: see patches.py (this is the first version).
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from .constants import (
        AGENT_REFUSED_ERROR,
        ANSWER_TASK_RUN_ACTIVITY,
        BACKEND_BUILTIN,
        ERROR_KIND_AGENT,
        ERROR_KIND_QUOTA,
        FINISH_TASK_RUN_ACTIVITY,
        INTEGRATION_NOT_FOUND_ERROR,
        LOAD_TASK_RUN_ACTIVITY,
        POST_RUN_REPLY_ACTIVITY,
        REPORT_RUN_OUTCOME_ACTIVITY,
        RUN_NOT_FOUND_ERROR,
        SHOW_RUN_STATUS_ACTIVITY,
        SIGNAL_FOLLOWUP,
        SIGNAL_RUN_CHANGED,
        SLACK_PERMANENT_ERROR,
        START_TASK_RUN_ACTIVITY,
        STATUS_COMPLETED,
        STATUS_FAILED,
        STATUS_QUOTA_LIMITED,
        TASK_RUN_WORKFLOW_TYPE,
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
        TaskRunWorkflowInput,
        TaskRunWorkflowResult,
    )

# External runs: how often the run is read again when no `run_changed` signal comes.
POLL_INTERVAL = timedelta(seconds=3)

_NOT_RETRYABLE = [RUN_NOT_FOUND_ERROR, INTEGRATION_NOT_FOUND_ERROR, SLACK_PERMANENT_ERROR, AGENT_REFUSED_ERROR]

# Steps that take long (a model call, Slack) heartbeat from a helper thread, so a killed
# worker is noticed within HEARTBEAT_TIMEOUT and the step retried elsewhere. Timeouts and
# retry policies are not part of the replayed command sequence: changing them needs no patch.
HEARTBEAT_TIMEOUT = timedelta(seconds=8)

# Database reads and writes of the tasks product.
RUN_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# One agent turn: one model call through the gateway. `AgentUnavailable` (gateway down, 5xx,
# timeout) is retried with backoff for up to half an hour; then the run fails as an agent error.
AGENT_OPTIONS = dict(
    start_to_close_timeout=timedelta(minutes=5),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    schedule_to_close_timeout=timedelta(minutes=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60),
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# Slack calls (several of up to ~10 s each); a 429 retries after Slack's Retry-After.
SLACK_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=60),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=10,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)

AGENT_UNREACHABLE_ERROR = "The model could not be reached through the LLM gateway."


@workflow.defn(name=TASK_RUN_WORKFLOW_TYPE)
class TaskRunWorkflow:
    """Run one task run through its agent backend and report it in its Slack thread."""

    def __init__(self) -> None:
        self._changed = False  # a signal came since the last read of the run
        self._followups_signalled = 0
        self._target: SlackTarget | None = None
        self._shown = ""
        self._stopped = False

    @workflow.signal(name=SIGNAL_RUN_CHANGED)
    def run_changed(self) -> None:
        """The runner API changed the run: read it now rather than at the next poll."""
        self._changed = True

    @workflow.signal(name=SIGNAL_FOLLOWUP)
    def followup(self) -> None:
        """A follow-up was stored on the run (built in: answered after the current turn; external: the runner reads it)."""
        self._followups_signalled += 1
        self._changed = True

    @workflow.run
    async def run(self, inp: TaskRunWorkflowInput) -> TaskRunWorkflowResult:
        self._target = SlackTarget(
            integration_id=inp.integration_id,
            run_id=inp.run_id,
            channel=inp.channel,
            thread_ts=inp.thread_ts,
            mention_ts=inp.mention_ts,
            status_ts=inp.status_ts,
        )
        self._shown = inp.shown
        self._stopped = inp.stopped
        try:
            state = await self._load(RunRef(run_id=inp.run_id))
            if not state.is_terminal:
                if state.backend == BACKEND_BUILTIN:
                    state = await self._run_builtin(state)
                else:
                    state = await self._watch_external(inp, state)
        except ActivityError as err:
            if _error_type(err) != RUN_NOT_FOUND_ERROR:
                raise
            workflow.logger.info("Run %s no longer exists; nothing to report", inp.run_id)
            return TaskRunWorkflowResult(run_id=inp.run_id, status="", reported=False, stopped=self._stopped)
        reported = await self._report(state)
        return TaskRunWorkflowResult(run_id=inp.run_id, status=state.status, reported=reported, stopped=self._stopped)

    # --- Built in ------------------------------------------------------------------------------

    async def _run_builtin(self, state: RunState) -> RunState:
        """Answer the task, then every follow-up stored meanwhile; finish with the last answer."""
        state = await workflow.execute_activity(
            START_TASK_RUN_ACTIVITY, RunRef(run_id=state.run_id), result_type=RunState, **RUN_OPTIONS
        )
        if state.is_terminal:  # cancelled (or finished) before it could start
            return state
        await self._show_status(state)
        cursor = 0
        conversation: list[ConversationMessage] = []
        turn = 0
        while True:
            try:
                answered = await workflow.execute_activity(
                    ANSWER_TASK_RUN_ACTIVITY,
                    AnswerInput(run_id=state.run_id, cursor=cursor, earlier=conversation),
                    result_type=AnswerResult,
                    **AGENT_OPTIONS,
                )
            except ActivityError as err:
                if _error_type(err) == RUN_NOT_FOUND_ERROR:
                    raise
                # Refused by the gateway for good, or unreachable for longer than the retries allow.
                reason = _reason(err) if _error_type(err) == AGENT_REFUSED_ERROR else AGENT_UNREACHABLE_ERROR
                return await self._finish(FinishInput(run_id=state.run_id, status=STATUS_FAILED, error=reason, error_kind=ERROR_KIND_AGENT))
            if answered.quota_limited:
                return await self._finish(
                    FinishInput(run_id=state.run_id, status=STATUS_QUOTA_LIMITED, error=answered.message, error_kind=ERROR_KIND_QUOTA)
                )
            turn += 1
            cursor = answered.cursor
            conversation = list(answered.conversation)
            finished = await workflow.execute_activity(
                FINISH_TASK_RUN_ACTIVITY,
                FinishInput(run_id=state.run_id, status=STATUS_COMPLETED, summary=answered.text, unless_followups_after=cursor),
                result_type=FinishResult,
                **RUN_OPTIONS,
            )
            if finished.finished:
                return finished.state
            # Follow-ups came in while the agent was answering: this answer goes to the thread
            # now, and the next turn answers them.
            await self._post_reply(f"answer-{turn}", answered.text)

    async def _finish(self, inp: FinishInput) -> RunState:
        finished = await workflow.execute_activity(FINISH_TASK_RUN_ACTIVITY, inp, result_type=FinishResult, **RUN_OPTIONS)
        return finished.state

    # --- External runners ------------------------------------------------------------------------

    async def _watch_external(self, inp: TaskRunWorkflowInput, state: RunState) -> RunState:
        """Follow the run a runner works on until it ends (or its heartbeat goes stale)."""
        while True:
            if state.is_terminal:
                return state  # the report edits the status message one last time
            if _shown(state) != self._shown:
                await self._show_status(state)
            if workflow.info().is_continue_as_new_suggested():
                assert self._target is not None
                workflow.continue_as_new(
                    TaskRunWorkflowInput(
                        run_id=inp.run_id,
                        integration_id=inp.integration_id,
                        channel=inp.channel,
                        thread_ts=inp.thread_ts,
                        mention_ts=inp.mention_ts,
                        status_ts=self._target.status_ts,
                        shown=self._shown,
                        stopped=self._stopped,
                    )
                )
            self._changed = False
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=POLL_INTERVAL)
            except asyncio.TimeoutError:
                pass
            try:
                state = await self._load(RunRef(run_id=inp.run_id, check_stale=True))
            except ActivityError as err:
                if _error_type(err) == RUN_NOT_FOUND_ERROR:
                    raise
                workflow.logger.warning("Could not read run %s; polling again: %s", inp.run_id, _reason(err))

    # --- Reading the run ------------------------------------------------------------------------

    async def _load(self, ref: RunRef) -> RunState:
        return await workflow.execute_activity(LOAD_TASK_RUN_ACTIVITY, ref, result_type=RunState, **RUN_OPTIONS)

    # --- Slack ----------------------------------------------------------------------------------

    async def _show_status(self, state: RunState) -> None:
        """Post the status message (once) or edit it in place to show the run's status and progress."""
        self._shown = _shown(state)
        await self._slack(SHOW_RUN_STATUS_ACTIVITY, lambda target: ShowStatusInput(target=target), keep_ts=True)

    async def _post_reply(self, step: str, text: str) -> None:
        await self._slack(POST_RUN_REPLY_ACTIVITY, lambda target: PostReplyInput(target=target, step=step, text=text))

    async def _report(self, state: RunState) -> bool:
        """Edit the status message, swap the reaction and post the outcome; True if it reached the thread."""
        workflow.logger.info("Run %s ended %s", state.run_id, state.status)
        return await self._slack(REPORT_RUN_OUTCOME_ACTIVITY, lambda target: ShowStatusInput(target=target))

    async def _slack(self, activity_name: str, make_input, *, keep_ts: bool = False) -> bool:
        """Run one Slack activity unless reporting has stopped; True if it did its work.

        A Slack refusal no retry fixes (revoked token, missing scope) is logged and the run
        goes on without its Slack report: the task page still shows it.
        """
        if self._stopped:
            return False
        assert self._target is not None
        try:
            reported = await workflow.execute_activity(
                activity_name, make_input(self._target), result_type=Reported, **SLACK_OPTIONS
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            workflow.logger.warning("%s failed for run %s: %s", activity_name, self._target.run_id, _reason(err))
            return False
        if reported.stopped:
            self._stopped = True
            return False
        if keep_ts and reported.ts:
            self._target.status_ts = reported.ts
        return True


def _shown(state: RunState) -> str:
    """What the status message shows for `state` (a new value means the message must be edited)."""
    return f"{state.status}|{state.progress}"


def _error_type(err: BaseException) -> str | None:
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause.type if isinstance(cause, ApplicationError) else None


def _reason(err: BaseException) -> str:
    """The innermost failure message ("Activity task failed" alone says nothing)."""
    while isinstance(err, FailureError) and err.cause is not None:
        err = err.cause
    return err.message if isinstance(err, FailureError) else str(err)
