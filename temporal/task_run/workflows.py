"""The task-run workflow: take one task run from `queued` to a final status and tell the Slack thread.

This module is deterministic workflow code run in Temporal's sandbox. Like the mention
workflow it imports nothing from Django nor the activities module: it calls activities
by their registered names (`constants.*_ACTIVITY`) with the dataclasses in `types`.

One execution per run (id `posthog-code-task-run-<run_id>`), started by the mention workflow's
activities when a task is created or a follow-up resumes a finished run. A built-in run is
three steps, so its history stays short (what the worker and the Temporal server do per run
is what bounds how many runs a worker serves at once):

1. `sync` (a local activity: it runs in this workflow's task, no task-queue round trip):
   the run is started (built in) and the status message ("Working on it…") posted once.
2. The run goes through its backend, decided when the run was created:
   - built in: the agent answers in turns (one model call each through the LLM gateway, a
     regular activity: it takes seconds and heartbeats). Follow-ups stored while a turn is
     under way are answered in another turn (the earlier answer is posted as a reply); the
     last answer is the run's summary. The gateway's 429 ends the run `quota_limited`.
   - external: a runner claims the run and reports through the REST API, which signals
     `run_changed`; the workflow also polls every `POLL_INTERVAL` (a lost signal only
     delays) with `sync`, which fails the run when its heartbeat is stale and edits the
     status message on every new progress line.
3. `conclude` (local for a built-in run; a regular activity for an external one, whose
   runner's last calls signal the workflow as it ends): the run finished (built in) and
   the outcome reported: the status message edited, 👀 swapped for the done/failed reaction, the result (a pull-request card
   when there is a URL) or the failure posted.

Every post goes through the Slack app's post-once ledger keyed by this workflow's id, so
retries, a step re-run by the next worker after one was killed mid-step, never post twice.
(A local step is also run again when the workflow task that ran it fails, e.g. a signal
arriving as it completes the workflow: its edits and reactions, idempotent, are repeated.)
A Slack refusal no retry fixes is logged by the step, which still succeeds. When Slack keeps
failing past the retries, the step is run again without its Slack part, so the run still
moves and finishes. When Slack says the message or thread is gone, reporting stops for
good (`stopped`); the run still finishes.

Versioning: see patches.py. Since ANSWER_CONCLUDES_PATCH a built-in turn concludes the run
itself (step 3 inside step 2), so the result reaches the thread as soon as the model answered;
step 3 then runs only when that failed.
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
        CONCLUDE_TASK_RUN_ACTIVITY,
        ERROR_KIND_AGENT,
        ERROR_KIND_QUOTA,
        INTEGRATION_NOT_FOUND_ERROR,
        POST_RUN_REPLY_ACTIVITY,
        RUN_NOT_FOUND_ERROR,
        SIGNAL_FOLLOWUP,
        SIGNAL_RUN_CHANGED,
        SLACK_PERMANENT_ERROR,
        STATUS_COMPLETED,
        STATUS_FAILED,
        STATUS_QUOTA_LIMITED,
        SYNC_TASK_RUN_ACTIVITY,
        TASK_RUN_WORKFLOW_TYPE,
    )
    from .patches import ANSWER_CONCLUDES_PATCH
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

# `sync` and `conclude`: a few database statements and a few Slack calls (up to ~10 s each;
# a 429 retries after Slack's Retry-After). Local activities: they run in the workflow's task
# on this worker (a killed worker's task times out and the next worker runs the step again,
# the post-once ledger keeping every post single). Retried here for up to a minute, then
# with timers, up to `maximum_attempts`; past that the step runs again without Slack.
STEP_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=60),
    schedule_to_close_timeout=timedelta(minutes=10),
    local_retry_threshold=timedelta(minutes=1),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=10,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# The same step without Slack: database only, retried for up to ten minutes.
DB_STEP_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(minutes=10),
    local_retry_threshold=timedelta(minutes=1),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# External runs' polls and conclusion: regular activities.
POLL_OPTIONS = dict(
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
# Posting an answer given before the run ended.
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
            state = await self._sync(start=True, local=True)
            if not state.is_terminal and state.backend == BACKEND_BUILTIN:
                concluded = await self._run_builtin(state)
            else:
                if not state.is_terminal:
                    await self._watch_external(inp, state)
                # A regular activity: the runner's calls signal the workflow at its very end (a retried
                # finish), and a signal arriving while a local step's workflow task completes the
                # workflow has that task retried and the step run again (idempotent, but edits twice).
                concluded = await self._conclude(None, local=False)
        except ActivityError as err:
            if _error_type(err) != RUN_NOT_FOUND_ERROR:
                raise
            workflow.logger.info("Run %s no longer exists; nothing to report", inp.run_id)
            return TaskRunWorkflowResult(run_id=inp.run_id, status="", reported=False, stopped=self._stopped)
        workflow.logger.info("Run %s ended %s", inp.run_id, concluded.state.status)
        return TaskRunWorkflowResult(
            run_id=inp.run_id, status=concluded.state.status, reported=concluded.reported, stopped=self._stopped
        )

    # --- Built in ------------------------------------------------------------------------------

    async def _run_builtin(self, state: RunState) -> ConcludeResult:
        """Answer the task, then every follow-up stored meanwhile; finish with the last answer and report it.

        Since ANSWER_CONCLUDES_PATCH a turn concludes the run itself once the model has
        answered; the conclude step runs only when it did not (see patches.py).
        """
        cursor = 0
        conversation: list[ConversationMessage] = []
        turn = 0
        answer_concludes = self._answer_concludes()
        while True:
            assert self._target is not None
            conclude = ConcludeInput(target=self._target, report=not self._stopped) if answer_concludes else None
            try:
                answered = await workflow.execute_activity(
                    ANSWER_TASK_RUN_ACTIVITY,
                    AnswerInput(run_id=state.run_id, cursor=cursor, earlier=conversation, conclude=conclude),
                    result_type=AnswerResult,
                    **AGENT_OPTIONS,
                )
            except ActivityError as err:
                if _error_type(err) == RUN_NOT_FOUND_ERROR:
                    raise
                # Refused by the gateway for good, or unreachable for longer than the retries allow.
                reason = _reason(err) if _error_type(err) == AGENT_REFUSED_ERROR else AGENT_UNREACHABLE_ERROR
                return await self._conclude(FinishInput(run_id=state.run_id, status=STATUS_FAILED, error=reason, error_kind=ERROR_KIND_AGENT))
            if answered.quota_limited:
                return await self._conclude(
                    FinishInput(run_id=state.run_id, status=STATUS_QUOTA_LIMITED, error=answered.message, error_kind=ERROR_KIND_QUOTA)
                )
            turn += 1
            cursor = answered.cursor
            conversation = list(answered.conversation)
            if answered.concluded is not None:  # the turn concluded the run itself
                concluded = answered.concluded
                self._stopped = self._stopped or concluded.stopped
            else:
                concluded = await self._conclude(
                    FinishInput(run_id=state.run_id, status=STATUS_COMPLETED, summary=answered.text, unless_followups_after=cursor)
                )
            if concluded.finished:
                return concluded
            # Follow-ups came in while the agent was answering: this answer goes to the thread
            # now, and the next turn answers them.
            await self._post_reply(f"answer-{turn}", answered.text)

    def _answer_concludes(self) -> bool:
        """Whether this execution's turns conclude the run themselves (recorded: see patches.py)."""
        return workflow.patched(ANSWER_CONCLUDES_PATCH)

    # --- External runners ------------------------------------------------------------------------

    async def _watch_external(self, inp: TaskRunWorkflowInput, state: RunState) -> RunState:
        """Follow the run a runner works on until it ends (or its heartbeat goes stale)."""
        while True:
            if state.is_terminal:
                return state  # the conclusion edits the status message one last time
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
                state = await self._sync(check_stale=True, local=False)
            except ActivityError as err:
                if _error_type(err) == RUN_NOT_FOUND_ERROR or is_cancelled_exception(err):
                    raise
                workflow.logger.warning("Could not read run %s; polling again: %s", inp.run_id, _reason(err))

    # --- Steps ----------------------------------------------------------------------------------

    async def _sync(self, *, start: bool = False, check_stale: bool = False, local: bool) -> RunState:
        """Move the run (start it / fail it if stale) and show it in the status message; return the run.

        The first step of a run is local (`local`), the external runs' polls regular activities.
        A first step whose Slack part kept failing is run again without it.
        """
        assert self._target is not None
        inp = SyncInput(target=self._target, start=start, check_stale=check_stale, shown=self._shown, report=not self._stopped)
        try:
            if local:
                synced = await workflow.execute_local_activity(SYNC_TASK_RUN_ACTIVITY, inp, result_type=SyncResult, **STEP_OPTIONS)
            else:
                synced = await workflow.execute_activity(SYNC_TASK_RUN_ACTIVITY, inp, result_type=SyncResult, **POLL_OPTIONS)
        except ActivityError as err:
            if _error_type(err) == RUN_NOT_FOUND_ERROR or is_cancelled_exception(err) or not local:
                raise
            workflow.logger.warning("Could not show run %s in its thread: %s", self._target.run_id, _reason(err))
            inp.report = False
            synced = await workflow.execute_local_activity(SYNC_TASK_RUN_ACTIVITY, inp, result_type=SyncResult, **DB_STEP_OPTIONS)
            return synced.state
        self._shown = synced.shown
        self._target.status_ts = synced.status_ts or self._target.status_ts
        self._stopped = self._stopped or synced.stopped
        return synced.state

    async def _conclude(self, finish: FinishInput | None, *, local: bool = True) -> ConcludeResult:
        """Finish the run (`finish`; None: it has ended already) and report the outcome; Slack failing past the retries is logged."""
        assert self._target is not None
        inp = ConcludeInput(target=self._target, finish=finish, report=not self._stopped)

        async def step(options: dict) -> ConcludeResult:
            if local:
                return await workflow.execute_local_activity(CONCLUDE_TASK_RUN_ACTIVITY, inp, result_type=ConcludeResult, **options)
            return await workflow.execute_activity(CONCLUDE_TASK_RUN_ACTIVITY, inp, result_type=ConcludeResult, **POLL_OPTIONS)

        try:
            concluded = await step(STEP_OPTIONS)
        except ActivityError as err:
            if _error_type(err) == RUN_NOT_FOUND_ERROR or is_cancelled_exception(err) or not inp.report:
                raise
            workflow.logger.warning("Could not report run %s in its thread: %s", self._target.run_id, _reason(err))
            inp.report = False
            return await step(DB_STEP_OPTIONS)
        self._stopped = self._stopped or concluded.stopped
        return concluded

    async def _post_reply(self, step: str, text: str) -> None:
        """Post an answer given before the run ended, once, unless reporting has stopped.

        A Slack refusal no retry fixes (revoked token, missing scope) is logged and the run
        goes on without it: the task page still shows it.
        """
        if self._stopped:
            return
        assert self._target is not None
        try:
            reported = await workflow.execute_activity(
                POST_RUN_REPLY_ACTIVITY, PostReplyInput(target=self._target, step=step, text=text), result_type=Reported, **SLACK_OPTIONS
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            workflow.logger.warning("Posting %s failed for run %s: %s", step, self._target.run_id, _reason(err))
            return
        if reported.stopped:
            self._stopped = True


def _error_type(err: BaseException) -> str | None:
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause.type if isinstance(cause, ApplicationError) else None


def _reason(err: BaseException) -> str:
    """The innermost failure message ("Activity task failed" alone says nothing)."""
    while isinstance(err, FailureError) and err.cause is not None:
        err = err.cause
    return err.message if isinstance(err, FailureError) else str(err)
