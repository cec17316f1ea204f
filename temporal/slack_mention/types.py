"""Workflow inputs and outputs. New fields get defaults so old callers and histories keep working."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SlackMentionWorkflowInput:
    event: dict[str, Any]  # the Slack `app_mention` event, as received
    integration_id: int  # our Integration's primary key
    slack_team_id: str  # the Slack workspace id (envelope `team_id`)
    event_id: str  # the envelope's `event_id`
    extra: dict[str, Any] = field(default_factory=dict)


# --- Activity inputs and outputs ---------------------------------------------------------
# Every field an activity needs travels in its input (ids, never ORM objects), so an
# activity can run on any worker and its arguments read plainly in the history.


@dataclass
class EnforceQuotaInput:
    integration_id: int
    channel: str
    thread_ts: str  # where the denial is posted
    user: str  # the mentioning Slack user (ephemeral fallback)


@dataclass
class QuotaGateResult:
    limited: bool  # True: the denial has been posted; do no work


@dataclass
class FindThreadTaskInput:
    integration_id: int
    channel: str
    thread_ts: str


@dataclass
class ThreadTaskResult:
    task_id: int | None  # None: the thread is not tied to a task yet
    workflow_id: str = ""  # the workflow that created the task


@dataclass
class RouteRepositoryInput:
    integration_id: int
    text: str


@dataclass
class RouteRepositoryResult:
    repository: str | None
    needs_picker: bool
    repositories: list[str] = field(default_factory=list)  # the choices the picker offers
    chosen_by_model: bool = False  # True: the routing model (through the LLM gateway) chose `repository`


@dataclass
class PostRepoPickerInput:
    integration_id: int
    channel: str
    thread_ts: str
    workflow_id: str
    repositories: list[str]


# Kinds of fixed message the workflow posts; the activity turns them into text
# (products.slack_app.messages holds the wording, and the workflow cannot import it).
MESSAGE_PICKER_TIMEOUT = "picker_timeout"
MESSAGE_APOLOGY = "apology"


@dataclass
class PostThreadMessageInput:
    integration_id: int
    channel: str
    thread_ts: str
    kind: str  # MESSAGE_PICKER_TIMEOUT or MESSAGE_APOLOGY


@dataclass
class PostedMessage:
    ts: str


@dataclass
class CreateTaskInput:
    integration_id: int
    workflow_id: str  # the idempotency key: one task per workflow, however often this runs
    channel: str
    thread_ts: str  # the thread the task is tied to
    event_ts: str  # the mention itself (gets the 👀 reaction)
    user: str
    text: str
    repository: str | None


@dataclass
class CreateTaskResult:
    task_id: int | None
    run_id: int | None
    created: bool  # False: an earlier attempt had already created it
    denied: bool = False  # True: over quota; the denial is posted and no task exists


@dataclass
class ForwardFollowupInput:
    integration_id: int
    workflow_id: str  # the idempotency key of this follow-up
    task_id: int
    channel: str
    thread_ts: str
    event_ts: str
    user: str
    text: str


@dataclass
class ForwardFollowupResult:
    forwarded: bool
    resumed: bool  # True: the task's run had finished, so a new run resuming it was started
    denied: bool = False  # True: over quota; the denial is posted and nothing was forwarded
    run_id: int | None = None


@dataclass
class HandleMentionInput:
    integration_id: int
    workflow_id: str  # the idempotency key of the task or follow-up this mention becomes
    channel: str
    thread_ts: str
    event_ts: str  # the mention itself (gets the 👀 reaction)
    user: str
    text: str


@dataclass
class HandleMentionResult:
    """What the one step did; the workflow goes on only for the picker (`needs_picker`)."""

    limited: bool = False  # over quota: the denial is posted, nothing else happened
    followup_task_id: int | None = None  # the mention was a follow-up to this task...
    followup: ForwardFollowupResult | None = None  # ...forwarded (or refused by its own gate) as this says
    needs_picker: bool = False  # the rules could not choose: ask with the picker (nothing posted yet)
    repositories: list[str] = field(default_factory=list)  # what the picker offers
    repository: str | None = None  # the repository of the task created
    created: CreateTaskResult | None = None  # the task created (or refused by the second gate: `created.denied`)


# --- Workflow result ---------------------------------------------------------------------

OUTCOME_QUOTA_LIMITED = "quota_limited"  # first gate refused; denial posted
OUTCOME_FOLLOWUP_FORWARDED = "followup_forwarded"
OUTCOME_FOLLOWUP_DENIED = "followup_denied"  # the follow-up's own gate refused
OUTCOME_TASK_CREATED = "task_created"
OUTCOME_TASK_DENIED = "task_denied"  # quota ran out before the task was created
OUTCOME_PICKER_TIMED_OUT = "picker_timed_out"


@dataclass
class SlackMentionWorkflowResult:
    outcome: str  # one of the OUTCOME_* values
    task_id: int | None = None
    run_id: int | None = None
    repository: str | None = None
    resumed: bool = False
