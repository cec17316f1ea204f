"""The Slack mention workflow: quota gate, follow-up forwarding, repository routing, task creation.

This module is deterministic workflow code run in Temporal's sandbox. It imports
nothing from Django and not even the activities module (which loads Django): it calls
activities by their registered names (`constants.*_ACTIVITY`) with the dataclasses in
`types`, so both the worker's sandbox and a bare `Replayer` can load it anywhere.

Every step that costs money is decided inside an activity that reads the quota state
again (`is_team_limited`), because quota can run out while an execution is under way
and because a history is replayed long after the webhook's check.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
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
        SIGNAL_NO_REPO_NEEDED,
        SIGNAL_REPO_SELECTED,
        SLACK_PERMANENT_ERROR,
        TASK_NOT_FOUND_ERROR,
        WORKFLOW_TYPE,
    )
    from .patches import BILLING_GATE_PATCH, ONE_STEP_PATCH
    from .types import (
        MESSAGE_APOLOGY,
        MESSAGE_PICKER_TIMEOUT,
        OUTCOME_FOLLOWUP_DENIED,
        OUTCOME_FOLLOWUP_FORWARDED,
        OUTCOME_PICKER_TIMED_OUT,
        OUTCOME_QUOTA_LIMITED,
        OUTCOME_TASK_CREATED,
        OUTCOME_TASK_DENIED,
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
        SlackMentionWorkflowInput,
        SlackMentionWorkflowResult,
        ThreadTaskResult,
    )

# How long the repository picker waits for a button press before giving up.
PICKER_TIMEOUT = timedelta(minutes=15)

_NOT_RETRYABLE = [INTEGRATION_NOT_FOUND_ERROR, TASK_NOT_FOUND_ERROR, SLACK_PERMANENT_ERROR]

# Quota gate: Redis being unreachable raises in the activity and is retried here (the
# webhook may have failed open; this gate never does). Bounded by schedule-to-close.
# Steps that post to Slack heartbeat while they run (temporal/slack_mention/activities.py),
# so a worker killed mid-post is noticed within seconds and the step retried elsewhere,
# where "post once" finds the message if it got out. Timeouts are not part of the
# command sequence Temporal replays, so changing them needs no patch.
HEARTBEAT_TIMEOUT = timedelta(seconds=8)

QUOTA_GATE_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# Database-only lookups.
LOOKUP_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=5,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# Repository routing: database lookups, plus, when the rules cannot decide, one call to the
# routing model through the LLM gateway (bounded by model_routing.ROUTING_TIMEOUT_SECONDS per
# read, a few seconds). That call never raises (any failure means the picker), so the
# attempt's budget only has to hold it; the helper thread heartbeats meanwhile. Retried
# like the lookups: only the database can fail it.
ROUTE_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=45),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=5,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# Activities that call Slack (several calls of up to ~10 s each). A Slack 429 fails the
# attempt with `next_retry_delay` = Retry-After, which takes the place of the backoff.
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
# The one step (quota gate, thread lookup, follow-up or routing, task creation): the gate's
# patience (Redis unreachable is retried for up to ten minutes, never failed open) with the
# Slack steps' timeouts (it calls Slack several times, and the routing model may be asked).
ONE_STEP_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=60),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    schedule_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
)
# The apology is best effort: short, few retries, and its failure never hides the real one.
APOLOGY_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=15),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3, non_retryable_error_types=_NOT_RETRYABLE),
)

FAILURE_ERROR_TYPE = "SlackMentionFailed"


@workflow.defn(name=WORKFLOW_TYPE)
class SlackMentionWorkflow:
    """Turn one Slack @mention into a task, or into a follow-up of the thread's task."""

    def __init__(self) -> None:
        self._offered: list[str] = []  # repositories on the posted picker; empty: no picker yet
        self._answered = False
        self._chosen: str | None = None

    @workflow.signal(name=SIGNAL_REPO_SELECTED)
    def repo_selected(self, repository: str) -> None:
        """A picker button: use `repository`. First answer wins; unknown repositories are ignored."""
        if self._answered:
            return
        if repository not in self._offered:
            workflow.logger.warning("Ignoring repo_selected(%r): not one of the offered repositories", repository)
            return
        self._chosen = repository
        self._answered = True

    @workflow.signal(name=SIGNAL_NO_REPO_NEEDED)
    def no_repo_needed(self) -> None:
        """The picker's "No repository" button: create the task without one."""
        if self._answered or not self._offered:
            return
        self._chosen = None
        self._answered = True

    @workflow.run
    async def run(self, inp: SlackMentionWorkflowInput) -> SlackMentionWorkflowResult:
        mention = _Mention.from_input(inp)
        try:
            return await self._process(inp, mention)
        except Exception as err:
            if is_cancelled_exception(err):
                raise
            await self._apologise(inp, mention)
            raise ApplicationError(
                f"Processing the Slack mention failed: {_describe(err)}", type=FAILURE_ERROR_TYPE, non_retryable=True
            ) from err

    async def _process(self, inp: SlackMentionWorkflowInput, mention: "_Mention") -> SlackMentionWorkflowResult:
        # Today: steps 1-4 in one activity, then the picker if the rules could not choose (see patches.py).
        if workflow.patched(ONE_STEP_PATCH):
            return await self._handle_in_one_step(inp, mention)
        # Executions started before the one step: one activity per step.
        # 1. Quota gate (added after executions without it were already running: see patches.py).
        if workflow.patched(BILLING_GATE_PATCH) and await self._quota_limited(inp, mention):
            return SlackMentionWorkflowResult(outcome=OUTCOME_QUOTA_LIMITED)
        return await self._handle_mention(inp, mention)

    async def _handle_mention(self, inp: SlackMentionWorkflowInput, mention: "_Mention") -> SlackMentionWorkflowResult:
        """Steps 2-4 one activity each, unchanged since before the billing gate (histories of both versions replay them)."""
        # 2. A mention in a thread that already has a task is a follow-up to it.
        thread = await workflow.execute_activity(
            FIND_THREAD_TASK_ACTIVITY,
            FindThreadTaskInput(integration_id=inp.integration_id, channel=mention.channel, thread_ts=mention.thread_ts),
            result_type=ThreadTaskResult,
            **LOOKUP_OPTIONS,
        )
        if thread.task_id is not None:
            forwarded = await workflow.execute_activity(
                FORWARD_FOLLOWUP_ACTIVITY,
                ForwardFollowupInput(
                    integration_id=inp.integration_id,
                    workflow_id=workflow.info().workflow_id,
                    task_id=thread.task_id,
                    channel=mention.channel,
                    thread_ts=mention.thread_ts,
                    event_ts=mention.ts,
                    user=mention.user,
                    text=mention.text,
                ),
                result_type=ForwardFollowupResult,
                **SLACK_OPTIONS,
            )
            return SlackMentionWorkflowResult(
                outcome=OUTCOME_FOLLOWUP_DENIED if forwarded.denied else OUTCOME_FOLLOWUP_FORWARDED,
                task_id=thread.task_id,
                run_id=forwarded.run_id,
                resumed=forwarded.resumed,
            )

        # 3. Pick the repository.
        route = await workflow.execute_activity(
            ROUTE_REPOSITORY_ACTIVITY,
            RouteRepositoryInput(integration_id=inp.integration_id, text=mention.text),
            result_type=RouteRepositoryResult,
            **ROUTE_OPTIONS,
        )
        if route.needs_picker:
            return await self._pick_and_create(inp, mention, list(route.repositories))
        return await self._create(inp, mention, route.repository)

    async def _handle_in_one_step(self, inp: SlackMentionWorkflowInput, mention: "_Mention") -> SlackMentionWorkflowResult:
        """Steps 1-4 in one activity (quota gate, the thread's task, the repository, the task); the picker only if needed."""
        handled = await workflow.execute_activity(
            HANDLE_MENTION_ACTIVITY,
            HandleMentionInput(
                integration_id=inp.integration_id,
                workflow_id=workflow.info().workflow_id,
                channel=mention.channel,
                thread_ts=mention.thread_ts,
                event_ts=mention.ts,
                user=mention.user,
                text=mention.text,
            ),
            result_type=HandleMentionResult,
            **ONE_STEP_OPTIONS,
        )
        if handled.limited:
            return SlackMentionWorkflowResult(outcome=OUTCOME_QUOTA_LIMITED)
        if handled.followup is not None:
            return SlackMentionWorkflowResult(
                outcome=OUTCOME_FOLLOWUP_DENIED if handled.followup.denied else OUTCOME_FOLLOWUP_FORWARDED,
                task_id=handled.followup_task_id,
                run_id=handled.followup.run_id,
                resumed=handled.followup.resumed,
            )
        if handled.needs_picker:
            return await self._pick_and_create(inp, mention, list(handled.repositories))
        if handled.created is None:
            raise ApplicationError(f"{HANDLE_MENTION_ACTIVITY} said neither what it did nor what to ask", non_retryable=True)
        return _created_result(handled.created, handled.repository)

    async def _pick_and_create(self, inp: SlackMentionWorkflowInput, mention: "_Mention", repositories: list[str]) -> SlackMentionWorkflowResult:
        """Step 3's picker (the rules could not choose): post it, wait for the answer, then step 4."""
        self._offered = repositories
        await workflow.execute_activity(
            POST_REPO_PICKER_ACTIVITY,
            PostRepoPickerInput(
                integration_id=inp.integration_id,
                channel=mention.channel,
                thread_ts=mention.thread_ts,
                workflow_id=workflow.info().workflow_id,
                repositories=self._offered,
            ),
            result_type=PostedMessage,
            **SLACK_OPTIONS,
        )
        try:
            await workflow.wait_condition(lambda: self._answered, timeout=PICKER_TIMEOUT)
        except asyncio.TimeoutError:
            await self._post(inp, mention, MESSAGE_PICKER_TIMEOUT, SLACK_OPTIONS)
            return SlackMentionWorkflowResult(outcome=OUTCOME_PICKER_TIMED_OUT)
        return await self._create(inp, mention, self._chosen)

    async def _create(self, inp: SlackMentionWorkflowInput, mention: "_Mention", repository: str | None) -> SlackMentionWorkflowResult:
        """Step 4: create the task (the activity gates on quota again first)."""
        created = await workflow.execute_activity(
            CREATE_TASK_FOR_REPO_ACTIVITY,
            CreateTaskInput(
                integration_id=inp.integration_id,
                workflow_id=workflow.info().workflow_id,
                channel=mention.channel,
                thread_ts=mention.thread_ts,
                event_ts=mention.ts,
                user=mention.user,
                text=mention.text,
                repository=repository,
            ),
            result_type=CreateTaskResult,
            **SLACK_OPTIONS,
        )
        return _created_result(created, repository)

    async def _quota_limited(self, inp: SlackMentionWorkflowInput, mention: "_Mention") -> bool:
        """Run the quota-enforcement activity; True means the denial is posted and nothing else may happen."""
        gate = await workflow.execute_activity(
            ENFORCE_BILLING_QUOTA_ACTIVITY,
            EnforceQuotaInput(integration_id=inp.integration_id, channel=mention.channel, thread_ts=mention.thread_ts, user=mention.user),
            result_type=QuotaGateResult,
            **QUOTA_GATE_OPTIONS,
        )
        return gate.limited

    async def _post(self, inp: SlackMentionWorkflowInput, mention: "_Mention", kind: str, options: dict) -> None:
        await workflow.execute_activity(
            POST_THREAD_MESSAGE_ACTIVITY,
            PostThreadMessageInput(integration_id=inp.integration_id, channel=mention.channel, thread_ts=mention.thread_ts, kind=kind),
            result_type=PostedMessage,
            **options,
        )

    async def _apologise(self, inp: SlackMentionWorkflowInput, mention: "_Mention") -> None:
        """Tell the thread something went wrong; never let this hide the original failure."""
        try:
            await self._post(inp, mention, MESSAGE_APOLOGY, APOLOGY_OPTIONS)
        except Exception as err:
            if is_cancelled_exception(err):
                raise
            workflow.logger.warning("Could not post the apology: %s", err)


def _created_result(created: CreateTaskResult, repository: str | None) -> SlackMentionWorkflowResult:
    if created.denied:
        return SlackMentionWorkflowResult(outcome=OUTCOME_TASK_DENIED, repository=repository)
    return SlackMentionWorkflowResult(
        outcome=OUTCOME_TASK_CREATED, task_id=created.task_id, run_id=created.run_id, repository=repository
    )


def _describe(err: BaseException) -> str:
    """Say which step failed and the innermost reason ("Activity task failed" alone says nothing)."""
    where = f"{err.activity_type}: " if isinstance(err, ActivityError) else ""
    while isinstance(err, FailureError) and err.cause is not None:
        err = err.cause
    reason = err.message if isinstance(err, FailureError) else str(err)
    return f"{where}{reason}"


class _Mention:
    """The fields of the Slack event the workflow uses."""

    def __init__(self, *, channel: str, ts: str, thread_ts: str, user: str, text: str) -> None:
        self.channel = channel
        self.ts = ts
        self.thread_ts = thread_ts
        self.user = user
        self.text = text

    @classmethod
    def from_input(cls, inp: SlackMentionWorkflowInput) -> "_Mention":
        event = inp.event
        ts = str(event.get("ts") or "")
        # A top-level mention starts its own thread (thread_ts = its ts); a reply names its thread.
        return cls(
            channel=str(event.get("channel") or ""),
            ts=ts,
            thread_ts=str(event.get("thread_ts") or ts),
            user=str(event.get("user") or ""),
            text=str(event.get("text") or ""),
        )
