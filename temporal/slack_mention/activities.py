"""Activities of the Slack mention workflow: the only part of it that touches the database or Slack.

Each activity is a plain synchronous function run on the worker's thread pool, takes
one dataclass from `types` and returns one. They are safe to retry and to run again
on replay: every write is keyed on the workflow id, and a Slack message is posted
only when the row recording it says it has not been posted yet.

Errors:
- A Slack 429 fails the attempt with `next_retry_delay` = Retry-After, so the worker
  thread is not held while Slack's limit resets (`slack_client` never sleeps on it).
- Quota state unavailable (Redis down) raises and Temporal retries: these gates never
  fail open. Being over quota is a normal result (denial posted), not an error.
- A deleted integration or task cannot be fixed by retrying: non-retryable errors.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from slack_sdk.errors import SlackApiError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from products.billing.quota_limiting import QuotaResource, is_team_limited
from products.slack_app import messages
from products.slack_app.models import Integration, SlackThreadTaskMapping
from products.slack_app.routing import route_repository
from products.slack_app.slack_client import get_slack_client
from products.tasks.models import Task, TaskFollowUp
from products.tasks.services import add_followup, create_task
from temporal.db import activity_finished, activity_started

from .constants import (
    CREATE_TASK_FOR_REPO_ACTIVITY,
    ENFORCE_BILLING_QUOTA_ACTIVITY,
    FIND_THREAD_TASK_ACTIVITY,
    FORWARD_FOLLOWUP_ACTIVITY,
    INTEGRATION_NOT_FOUND_ERROR,
    POST_REPO_PICKER_ACTIVITY,
    POST_THREAD_MESSAGE_ACTIVITY,
    ROUTE_REPOSITORY_ACTIVITY,
    SLACK_PERMANENT_ERROR,
    SLACK_RATE_LIMITED_ERROR,
    TASK_NOT_FOUND_ERROR,
)
from .types import (
    MESSAGE_APOLOGY,
    MESSAGE_PICKER_TIMEOUT,
    CreateTaskInput,
    CreateTaskResult,
    EnforceQuotaInput,
    FindThreadTaskInput,
    ForwardFollowupInput,
    ForwardFollowupResult,
    PostedMessage,
    PostRepoPickerInput,
    PostThreadMessageInput,
    QuotaGateResult,
    RouteRepositoryInput,
    RouteRepositoryResult,
    ThreadTaskResult,
)

logger = logging.getLogger(__name__)

# Slack error codes that retrying cannot fix (the bot's token, scopes or channel access must change).
PERMANENT_SLACK_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "team_access_not_granted",
        "invalid_blocks",
        "msg_too_long",
    }
)
TITLE_MAX_CHARS = 80
THREAD_CONTEXT_MESSAGES = 20

F = TypeVar("F", bound=Callable)


def _django_activity(fn: F) -> F:
    """Run `fn` with fresh database connections and map Slack errors to Temporal's retry rules.

    A 429 becomes a retry after Retry-After; an error no retry can fix (a revoked token,
    a missing scope, a channel the bot cannot see) becomes non-retryable.

    The worker's threads live as long as the worker; `temporal.db` does Django's
    per-request connection housekeeping around each activity.
    """

    @functools.wraps(fn)
    def wrapper(inp):
        activity_started()
        try:
            return fn(inp)
        except SlackApiError as error:
            if messages.is_rate_limited(error):
                delay = messages.retry_after_seconds(error)
                raise ApplicationError(
                    f"Slack rate limited {fn.__name__}; retrying in {delay}s",
                    type=SLACK_RATE_LIMITED_ERROR,
                    next_retry_delay=timedelta(seconds=delay),
                ) from error
            code = error.response.get("error") if error.response is not None else None
            if code in PERMANENT_SLACK_ERRORS:
                raise ApplicationError(
                    f"Slack refused {fn.__name__}: {code}", type=SLACK_PERMANENT_ERROR, non_retryable=True
                ) from error
            raise
        finally:
            activity_finished()

    return wrapper  # type: ignore[return-value]


def _integration(integration_id: int) -> Integration:
    try:
        return Integration.objects.select_related("project").get(pk=integration_id)
    except Integration.DoesNotExist:
        raise ApplicationError(
            f"Slack integration #{integration_id} no longer exists", type=INTEGRATION_NOT_FOUND_ERROR, non_retryable=True
        ) from None


def _deny_if_limited(integration: Integration, *, channel: str, thread_ts: str, user: str) -> bool:
    """Post the quota denial and return True if the project is out of AI credits.

    `is_team_limited` raises QuotaStateUnavailable when Redis is down: it propagates so
    Temporal retries the activity (never fail open inside the workflow).
    """
    if not is_team_limited(integration.project.api_token, QuotaResource.AI_CREDITS):
        return False
    logger.info("Project #%s is out of AI credits; refusing Slack work in %s/%s", integration.project_id, channel, thread_ts)
    try:
        messages.post_quota_denial(integration, channel=channel, thread_ts=thread_ts, user=user)
    except SlackApiError as error:
        if messages.is_rate_limited(error):
            raise
        # The work is refused either way; a denial Slack will not show must not turn into an error.
        logger.warning("Could not post the quota denial in %s/%s: %s", channel, thread_ts, error.response.get("error"))
    return True


# --- Text helpers ---------------------------------------------------------------------------

_USER_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LINK_WITH_LABEL = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^<>|]+)>")


def clean_mention_text(text: str) -> str:
    """Return the mention's words without the bot's @-mention and Slack's link markup."""
    text = _USER_MENTION.sub(" ", text or "")
    text = _LINK_WITH_LABEL.sub(r"\2", text)
    text = _BARE_LINK.sub(r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def task_title(text: str) -> str:
    cleaned = clean_mention_text(text)
    if len(cleaned) <= TITLE_MAX_CHARS:
        return cleaned or "Slack request"
    return cleaned[: TITLE_MAX_CHARS - 1].rstrip() + "…"


def _react_with_eyes(integration: Integration, *, channel: str, ts: str) -> None:
    """Acknowledge the mention with 👀; a courtesy, so a refusal (say, no `reactions:write`
    scope) is logged and the work goes on. A 429 still propagates: retrying is cheap and safe."""
    try:
        messages.add_reaction(integration, channel=channel, ts=ts, name="eyes")
    except SlackApiError as error:
        if messages.is_rate_limited(error):
            raise
        logger.warning("Could not add the eyes reaction in %s: %s", channel, error.response.get("error"))


def _thread_context(integration: Integration, inp: CreateTaskInput) -> list[str]:
    """The earlier messages of the thread the mention was made in (best effort; none for a new thread)."""
    if inp.thread_ts == inp.event_ts:
        return []
    try:
        response = get_slack_client(integration).conversations_replies(
            channel=inp.channel, ts=inp.thread_ts, limit=THREAD_CONTEXT_MESSAGES
        )
    except SlackApiError as error:
        if messages.is_rate_limited(error):
            raise
        logger.info("Could not read thread %s/%s for context: %s", inp.channel, inp.thread_ts, error.response.get("error"))
        return []
    lines = []
    for message in response.get("messages") or []:
        if message.get("ts") == inp.event_ts:
            continue
        author = message.get("user") or message.get("bot_id") or "someone"
        text = clean_mention_text(message.get("text") or "")
        if text:
            lines.append(f"<@{author}>: {text}")
    return lines


def task_description(inp: CreateTaskInput, context: list[str]) -> str:
    parts = [
        clean_mention_text(inp.text),
        f"Requested in Slack by <@{inp.user}> in channel {inp.channel} (thread {inp.thread_ts}).",
    ]
    if context:
        parts.append("Earlier in the thread:\n" + "\n".join(context))
    return "\n\n".join(p for p in parts if p)


# --- Activities ------------------------------------------------------------------------------


@activity.defn(name=ENFORCE_BILLING_QUOTA_ACTIVITY)
@_django_activity
def enforce_billing_quota_activity(inp: EnforceQuotaInput) -> QuotaGateResult:
    """Refuse the mention (denial posted in the thread) if the project is out of AI credits."""
    integration = _integration(inp.integration_id)
    limited = _deny_if_limited(integration, channel=inp.channel, thread_ts=inp.thread_ts, user=inp.user)
    return QuotaGateResult(limited=limited)


@activity.defn(name=FIND_THREAD_TASK_ACTIVITY)
@_django_activity
def find_thread_task_activity(inp: FindThreadTaskInput) -> ThreadTaskResult:
    """Say which task, if any, the Slack thread is tied to."""
    mapping = (
        SlackThreadTaskMapping.objects.filter(integration_id=inp.integration_id, channel=inp.channel, thread_ts=inp.thread_ts)
        .only("task_id", "workflow_id")
        .first()
    )
    if mapping is None:
        return ThreadTaskResult(task_id=None)
    return ThreadTaskResult(task_id=mapping.task_id, workflow_id=mapping.workflow_id)


@activity.defn(name=ROUTE_REPOSITORY_ACTIVITY)
@_django_activity
def route_repository_activity(inp: RouteRepositoryInput) -> RouteRepositoryResult:
    """Choose the repository from the text and the integration's configured repositories."""
    integration = _integration(inp.integration_id)
    repositories = integration.repositories
    decision = route_repository(inp.text, repositories, integration.default_repository)
    return RouteRepositoryResult(
        repository=decision.repository,
        needs_picker=decision.needs_picker,
        repositories=repositories if decision.needs_picker else [],
    )


@activity.defn(name=POST_REPO_PICKER_ACTIVITY)
@_django_activity
def post_repo_picker_activity(inp: PostRepoPickerInput) -> PostedMessage:
    """Ask in the thread which repository to use (buttons signal the workflow)."""
    integration = _integration(inp.integration_id)
    ts = messages.post_repo_picker(
        integration, channel=inp.channel, thread_ts=inp.thread_ts, workflow_id=inp.workflow_id, repositories=inp.repositories
    )
    return PostedMessage(ts=ts)


_MESSAGE_TEXTS = {
    MESSAGE_PICKER_TIMEOUT: messages.PICKER_TIMEOUT_TEXT,
    MESSAGE_APOLOGY: messages.APOLOGY_TEXT,
}


@activity.defn(name=POST_THREAD_MESSAGE_ACTIVITY)
@_django_activity
def post_thread_message_activity(inp: PostThreadMessageInput) -> PostedMessage:
    """Post one of the fixed messages (picker timeout, apology) in the thread."""
    text = _MESSAGE_TEXTS.get(inp.kind)
    if text is None:
        raise ApplicationError(f"Unknown message kind {inp.kind!r}", type="UnknownMessageKind", non_retryable=True)
    integration = _integration(inp.integration_id)
    ts = messages.post_in_thread(integration, channel=inp.channel, thread_ts=inp.thread_ts, text=text)
    return PostedMessage(ts=ts)


@activity.defn(name=CREATE_TASK_FOR_REPO_ACTIVITY)
@_django_activity
def create_task_for_repo_activity(inp: CreateTaskInput) -> CreateTaskResult:
    """Create the mention's task, tie the thread to it and say "On it", exactly once per workflow.

    Gates on quota first (quota may have run out since the webhook and the first gate):
    over quota, the denial is posted and no task is created. A retry after the task was
    created skips the gate: the work was already accepted.
    """
    integration = _integration(inp.integration_id)
    project = integration.project
    already_created = Task.objects.filter(idempotency_key=inp.workflow_id).exists()
    if not already_created and _deny_if_limited(integration, channel=inp.channel, thread_ts=inp.thread_ts, user=inp.user):
        return CreateTaskResult(task_id=None, run_id=None, created=False, denied=True)

    _react_with_eyes(integration, channel=inp.channel, ts=inp.event_ts)
    description = task_description(inp, [] if already_created else _thread_context(integration, inp))
    created = create_task(
        project=project,
        title=task_title(inp.text),
        description=description,
        repository=inp.repository,
        origin_product="slack",
        idempotency_key=inp.workflow_id,
    )
    mapping, _ = SlackThreadTaskMapping.objects.get_or_create(
        integration=integration,
        channel=inp.channel,
        thread_ts=inp.thread_ts,
        defaults=dict(
            project=project,
            slack_workspace_id=integration.integration_id,
            task=created.task,
            task_run=created.run,
            mentioning_slack_user_id=inp.user,
            workflow_id=inp.workflow_id,
        ),
    )
    if mapping.workflow_id != inp.workflow_id:
        # Another mention in the same thread created its task at the same moment; the
        # thread stays tied to that one. Ours exists; link it once, on first creation.
        logger.warning("Thread %s/%s is already tied to task #%s", inp.channel, inp.thread_ts, mapping.task_id)
        if created.created:
            messages.post_in_thread(integration, channel=inp.channel, thread_ts=inp.thread_ts, text=messages.on_it_text(created.task.pk))
    elif not mapping.reply_ts:
        ts = messages.post_in_thread(integration, channel=inp.channel, thread_ts=inp.thread_ts, text=messages.on_it_text(created.task.pk))
        SlackThreadTaskMapping.objects.filter(pk=mapping.pk, reply_ts="").update(reply_ts=ts or "posted")
    return CreateTaskResult(task_id=created.task.pk, run_id=created.run.pk, created=created.created)


@activity.defn(name=FORWARD_FOLLOWUP_ACTIVITY)
@_django_activity
def forward_followup_activity(inp: ForwardFollowupInput) -> ForwardFollowupResult:
    """Append a later mention in the thread to the task's current run (resuming a finished run).

    Gates on quota first: over quota, the denial is posted and nothing is forwarded.
    The sender's name is recorded when they are not the one who started the task.
    """
    integration = _integration(inp.integration_id)
    try:
        task = Task.objects.get(pk=inp.task_id, project_id=integration.project_id)
    except Task.DoesNotExist:
        raise ApplicationError(f"Task #{inp.task_id} no longer exists", type=TASK_NOT_FOUND_ERROR, non_retryable=True) from None
    already_forwarded = TaskFollowUp.objects.filter(idempotency_key=inp.workflow_id).exists()
    if not already_forwarded and _deny_if_limited(integration, channel=inp.channel, thread_ts=inp.thread_ts, user=inp.user):
        return ForwardFollowupResult(forwarded=False, resumed=False, denied=True)

    mapping = SlackThreadTaskMapping.objects.filter(integration=integration, channel=inp.channel, thread_ts=inp.thread_ts).first()
    requester = mapping.mentioning_slack_user_id if mapping is not None else ""
    author_name = "" if inp.user == requester else messages.get_user_display_name(integration, inp.user)
    result = add_followup(
        task=task,
        text=clean_mention_text(inp.text),
        author_slack_user_id=inp.user,
        author_name=author_name,
        idempotency_key=inp.workflow_id,
    )
    if mapping is not None and mapping.task_run_id != result.run.pk:
        SlackThreadTaskMapping.objects.filter(pk=mapping.pk).update(task_run=result.run)
    # Acknowledge in Slack after the follow-up is stored (already_reacted is fine on a retry).
    _react_with_eyes(integration, channel=inp.channel, ts=inp.event_ts)
    return ForwardFollowupResult(forwarded=True, resumed=result.resumed, run_id=result.run.pk)
