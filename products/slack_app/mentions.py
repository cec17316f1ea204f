"""What the bot does with a Slack mention, one function per step of the mention workflow.

The Temporal activities call these through `products.slack_app.facade` (input in, one
call, result out). Every step is safe to run again: writes are keyed on the workflow id
(the task, the follow-up, the thread mapping, the picker record) and every bot message
goes through `posting.post_once`, so a retried or crashed attempt never posts twice.

Errors: `IntegrationGone` / `TaskGone` (no retry can help), `SlackRateLimited` (retry
after Retry-After), `SlackRefused` (no retry can help), `SlackUnavailable` (retry), and
the billing facade's `QuotaStateUnavailable` (retry: these gates never fail open).
Being over quota is a result (the denial is posted), not an error.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

from django.db import transaction

from products.billing.facade import QuotaResource, is_team_limited
from products.tasks.facade import Task, TaskFollowUp, add_followup, create_task

from . import messages, model_routing, names
from .errors import IntegrationGone, SlackPostError, SlackRateLimited, TaskGone, UnknownMessageKind
from .models import Integration, RepoPicker, SlackThreadTaskMapping
from .posting import Step, add_reaction, call_slack, post_once
from .routing import route_repository
from .slack_client import get_slack_client
from .text import clean_mention_text, task_description, task_title

logger = logging.getLogger(__name__)

# Step names of the bot's messages (Slack message metadata and the BotMessage ledger carry them).
QUOTA_DENIAL_STEP = "quota_denial"
TRY_AGAIN_STEP = "try_again"
ON_IT_STEP = "on_it"
PICKER_STEP = "repo_picker"

THREAD_CONTEXT_MESSAGES = 20


@dataclass(frozen=True)
class MentionRequest:
    """One mention as the workflow passes it on: where, who, what, and the workflow (the idempotency key)."""

    integration_id: int
    workflow_id: str
    channel: str
    thread_ts: str  # the thread the task is tied to (the mention's own ts for a top-level mention)
    event_ts: str = ""  # the mention itself (it gets the 👀 reaction)
    user: str = ""
    text: str = ""


@dataclass(frozen=True)
class ThreadTask:
    task_id: int | None  # None: the thread is not tied to a task yet
    workflow_id: str = ""


@dataclass(frozen=True)
class RepositoryChoice:
    repository: str | None
    needs_picker: bool
    repositories: list[str] = field(default_factory=list)  # what the picker offers (only when needs_picker)
    chosen_by_model: bool = False  # True: the rules could not decide and the routing model chose `repository`


@dataclass(frozen=True)
class MentionTask:
    task_id: int | None = None
    run_id: int | None = None
    created: bool = False  # False: an earlier attempt had already created it
    denied: bool = False  # True: over quota; the denial is posted and no task exists


@dataclass(frozen=True)
class ForwardedFollowup:
    forwarded: bool
    resumed: bool = False
    denied: bool = False
    run_id: int | None = None


def get_integration(integration_id: int) -> Integration:
    try:
        return Integration.objects.select_related("project").get(pk=integration_id)
    except Integration.DoesNotExist:
        raise IntegrationGone(f"Slack integration #{integration_id} no longer exists") from None


# --- Quota ------------------------------------------------------------------------------------


def post_quota_denial(
    integration: Integration, *, workflow_id: str, channel: str, thread_ts: str, user: str, from_webhook: bool = False
) -> None:
    """Tell the thread, once per event, that the team is out of AI credits (ephemeral to `user` if the post fails).

    The webhook and the workflow's gates all post the denial through here. A failure to
    post is logged (the work is refused either way), except a 429 inside the workflow,
    which is raised so the activity retries after Retry-After.
    """
    try:
        post_once(
            integration,
            Step(workflow_id, QUOTA_DENIAL_STEP),
            channel=channel,
            thread_ts=thread_ts,
            text=messages.quota_denial_text(),
            fallback_user=user,
            after_crash="skip" if from_webhook else "look_in_thread",
        )
    except SlackRateLimited:
        if not from_webhook:
            raise
        logger.warning("Slack rate limited the quota denial in %s/%s", channel, thread_ts)
    except SlackPostError as error:
        logger.warning("could not post the quota denial in %s/%s: %s", channel, thread_ts, error)


def post_try_again_shortly(integration: Integration, *, workflow_id: str, channel: str, thread_ts: str, user: str) -> None:
    """Tell the thread, once per event, that the quota cannot be checked now (webhook, failure mode closed)."""
    try:
        post_once(
            integration,
            Step(workflow_id, TRY_AGAIN_STEP),
            channel=channel,
            thread_ts=thread_ts,
            text=messages.TRY_AGAIN_SHORTLY_TEXT,
            fallback_user=user,
            after_crash="skip",
        )
    except SlackPostError as error:
        logger.warning("could not post 'try again shortly' in %s/%s: %s", channel, thread_ts, error)


def _deny_if_limited(integration: Integration, *, workflow_id: str, channel: str, thread_ts: str, user: str) -> bool:
    """Post the quota denial and return True if the project is out of AI credits.

    `is_team_limited` raises QuotaStateUnavailable when Redis is down: it propagates so
    Temporal retries the activity (never fail open inside the workflow).
    """
    if not is_team_limited(integration.project.api_token, QuotaResource.AI_CREDITS):
        return False
    logger.info("Project #%s is out of AI credits; refusing Slack work in %s/%s", integration.project_id, channel, thread_ts)
    post_quota_denial(integration, workflow_id=workflow_id, channel=channel, thread_ts=thread_ts, user=user)
    return True


def enforce_quota(integration_id: int, *, workflow_id: str, channel: str, thread_ts: str, user: str) -> bool:
    """Refuse the mention (denial posted in the thread, once) if the project is out of AI credits; True if refused."""
    integration = get_integration(integration_id)
    return _deny_if_limited(integration, workflow_id=workflow_id, channel=channel, thread_ts=thread_ts, user=user)


# --- Thread and repository ------------------------------------------------------------------


def find_thread_task(integration_id: int, *, channel: str, thread_ts: str) -> ThreadTask:
    """Say which task, if any, the Slack thread is tied to."""
    mapping = (
        SlackThreadTaskMapping.objects.filter(integration_id=integration_id, channel=channel, thread_ts=thread_ts)
        .only("task_id", "workflow_id")
        .first()
    )
    if mapping is None:
        return ThreadTask(task_id=None)
    return ThreadTask(task_id=mapping.task_id, workflow_id=mapping.workflow_id)


def choose_repository(integration_id: int, *, text: str, workflow_id: str = "") -> RepositoryChoice:
    """Choose the repository from the text and the integration's configured repositories.

    When the rules cannot decide (`route_repository` needs the picker) and a model
    provider is configured, the routing model is asked through the LLM gateway (metered
    and billed as `slack_app_routing`, traced with `workflow_id`); any failure or
    hesitation of it means the picker.
    """
    return _choose_repository(get_integration(integration_id), text=text, workflow_id=workflow_id)


def _choose_repository(integration: Integration, *, text: str, workflow_id: str) -> RepositoryChoice:
    repositories = integration.repositories
    decision = route_repository(text, repositories, integration.default_repository)
    if decision.needs_picker and model_routing.is_configured():
        choice = model_routing.pick_repository(
            project_id=integration.project_id, text=text, repositories=repositories, trace_id=workflow_id
        )
        if choice.repository is not None:
            return RepositoryChoice(repository=choice.repository, needs_picker=False, chosen_by_model=True)
    return RepositoryChoice(
        repository=decision.repository,
        needs_picker=decision.needs_picker,
        repositories=repositories if decision.needs_picker else [],
    )


def post_repo_picker(integration_id: int, *, workflow_id: str, channel: str, thread_ts: str, repositories: list[str]) -> str:
    """Ask in the thread which repository to use, once; return the picker's ts.

    What is offered is recorded before the picker is posted, so the interactivity
    endpoint can refuse a click naming anything else.
    """
    integration = get_integration(integration_id)
    RepoPicker.objects.get_or_create(
        workflow_id=workflow_id,
        defaults={"integration": integration, "channel": channel, "thread_ts": thread_ts, "options": list(repositories)},
    )
    ts = post_once(
        integration,
        Step(workflow_id, PICKER_STEP),
        channel=channel,
        thread_ts=thread_ts,
        text=messages.PICKER_PROMPT_TEXT,
        blocks=messages.repo_picker_blocks(workflow_id, repositories),
    )
    if ts:
        RepoPicker.objects.filter(workflow_id=workflow_id, message_ts="").update(message_ts=ts)
    return ts or ""


def post_fixed_message(integration_id: int, *, workflow_id: str, channel: str, thread_ts: str, kind: str) -> str:
    """Post one of the fixed messages (`messages.FIXED_MESSAGES`: picker timeout, apology) in the thread, once."""
    text = messages.FIXED_MESSAGES.get(kind)
    if text is None:
        raise UnknownMessageKind(f"Unknown message kind {kind!r}")
    integration = get_integration(integration_id)
    return post_once(integration, Step(workflow_id, kind), channel=channel, thread_ts=thread_ts, text=text) or ""


# --- The task and its follow-ups ---------------------------------------------------------------


def create_task_for_mention(request: MentionRequest, *, repository: str | None) -> MentionTask:
    """Create the mention's task, tie the thread to it and say "On it", exactly once per workflow.

    Gates on quota first (quota may have run out since the webhook and the first gate):
    over quota, the denial is posted and no task is created. A retry after the task was
    created skips the gate: the work was already accepted. The task and the thread
    mapping are written in one transaction (never a task without its thread); Slack is
    told after it commits.
    """
    return _create_task(get_integration(request.integration_id), request, repository=repository, gate=True)


def _create_task(integration: Integration, request: MentionRequest, *, repository: str | None, gate: bool) -> MentionTask:
    """`create_task_for_mention` for a loaded integration; `gate` False when the caller has just gated itself."""
    already_created = Task.objects.filter(idempotency_key=request.workflow_id).exists()
    if gate and not already_created and _deny_if_limited(
        integration, workflow_id=request.workflow_id, channel=request.channel, thread_ts=request.thread_ts, user=request.user
    ):
        return MentionTask(denied=True)

    _react_with_eyes(integration, channel=request.channel, ts=request.event_ts)
    user_name = partial(names.user_name, integration)
    channel_name = partial(names.channel_name, integration)
    cleaned = clean_mention_text(request.text, user_name=user_name, channel_name=channel_name)
    context = [] if already_created else _thread_context(integration, request, user_name=user_name, channel_name=channel_name)
    description = task_description(
        request=cleaned,
        requester=user_name(request.user),
        channel=channel_name(request.channel),
        thread_ts=request.thread_ts,
        context=context,
    )
    with transaction.atomic():
        created = create_task(
            project=integration.project,
            title=task_title(cleaned),
            description=description,
            repository=repository,
            origin_product="slack",
            idempotency_key=request.workflow_id,
        )
        mapping, _ = SlackThreadTaskMapping.objects.get_or_create(
            integration=integration,
            channel=request.channel,
            thread_ts=request.thread_ts,
            defaults=dict(
                project=integration.project,
                slack_workspace_id=integration.integration_id,
                task=created.task,
                task_run=created.run,
                mentioning_slack_user_id=request.user,
                workflow_id=request.workflow_id,
            ),
        )
    if mapping.workflow_id != request.workflow_id:
        # Another mention in the same thread created its task at the same moment; the
        # thread stays tied to that one. Ours exists too, and is announced (once) all the same.
        logger.warning("Thread %s/%s is already tied to task #%s", request.channel, request.thread_ts, mapping.task_id)
    ts = post_once(
        integration,
        Step(request.workflow_id, ON_IT_STEP),
        channel=request.channel,
        thread_ts=request.thread_ts,
        text=messages.on_it_text(created.task.pk),
    )
    if mapping.workflow_id == request.workflow_id and not mapping.reply_ts:
        SlackThreadTaskMapping.objects.filter(pk=mapping.pk, reply_ts="").update(reply_ts=ts or "posted")
    return MentionTask(task_id=created.task.pk, run_id=created.run.pk, created=created.created)


def forward_followup(request: MentionRequest, *, task_id: int) -> ForwardedFollowup:
    """Append a later mention in the thread to the task's current run (resuming a finished run).

    Gates on quota first: over quota, the denial is posted and nothing is forwarded.
    The sender's Slack name is recorded with the follow-up (the task page shows it).
    """
    return _forward_followup(get_integration(request.integration_id), request, task_id=task_id, gate=True)


def _forward_followup(integration: Integration, request: MentionRequest, *, task_id: int, gate: bool) -> ForwardedFollowup:
    """`forward_followup` for a loaded integration; `gate` False when the caller has just gated itself."""
    task = Task.objects.filter(pk=task_id, project_id=integration.project_id).first()
    if task is None:
        raise TaskGone(f"Task #{task_id} no longer exists")
    already_forwarded = TaskFollowUp.objects.filter(idempotency_key=request.workflow_id).exists()
    if gate and not already_forwarded and _deny_if_limited(
        integration, workflow_id=request.workflow_id, channel=request.channel, thread_ts=request.thread_ts, user=request.user
    ):
        return ForwardedFollowup(forwarded=False, denied=True)

    mapping = SlackThreadTaskMapping.objects.filter(
        integration=integration, channel=request.channel, thread_ts=request.thread_ts
    ).first()
    user_name = partial(names.user_name, integration)
    result = add_followup(
        task=task,
        text=clean_mention_text(request.text, user_name=user_name, channel_name=partial(names.channel_name, integration)),
        author_slack_user_id=request.user,
        author_name=user_name(request.user),
        idempotency_key=request.workflow_id,
    )
    if mapping is not None and mapping.task_run_id != result.run.pk:
        SlackThreadTaskMapping.objects.filter(pk=mapping.pk).update(task_run=result.run)
    # Acknowledge in Slack after the follow-up is stored (already_reacted is fine on a retry).
    _react_with_eyes(integration, channel=request.channel, ts=request.event_ts)
    return ForwardedFollowup(forwarded=True, resumed=result.resumed, run_id=result.run.pk)


@dataclass(frozen=True)
class HandledMention:
    """What `handle_mention` did with a mention: exactly one of the fields below says so."""

    limited: bool = False  # over quota: the denial is posted, nothing else happened
    followup_task_id: int | None = None  # the thread's task: the mention was a follow-up to it...
    followup: ForwardedFollowup | None = None  # ...and this is what forwarding it did
    picker: list[str] | None = None  # the rules could not choose: the picker must offer these (nothing posted yet)
    repository: str | None = None  # the repository the task was created for
    task: MentionTask | None = None  # the task created (or refused by the second gate: `task.denied`)


def handle_mention(request: MentionRequest) -> HandledMention:
    """The mention workflow's usual steps in one call: quota gate, the thread's task, the repository, the task.

    The same steps, in the same order, as `enforce_quota`, `find_thread_task`,
    `forward_followup` or `choose_repository` and `create_task_for_mention` (one
    activity instead of four: each step is a task-queue round trip and a workflow task).
    Stops before the picker: when the rules cannot choose, nothing is posted and the
    workflow asks. Safe to run again after any step: a run that already created its task
    (or forwarded its follow-up), keyed on the workflow id, skips the gate (the work was
    accepted) and finds what it did instead of doing it twice; the writes and posts are
    the steps' own, idempotent ones. The integration is read once, and quota is read once:
    the create and forward steps' own gate is skipped, except before creating a task for a
    repository the routing model chose (that call is billed, and took time).
    """
    integration = get_integration(request.integration_id)
    own_task = Task.objects.filter(idempotency_key=request.workflow_id).exists()
    accepted = own_task or TaskFollowUp.objects.filter(idempotency_key=request.workflow_id).exists()
    if not accepted and _deny_if_limited(
        integration, workflow_id=request.workflow_id, channel=request.channel, thread_ts=request.thread_ts, user=request.user
    ):
        return HandledMention(limited=True)
    if own_task:  # an earlier run of this step created the task: finish what it did (announce, start)
        made = _create_task(integration, request, repository=None, gate=False)
        return HandledMention(repository=Task.objects.get(pk=made.task_id).repository or None, task=made)
    thread = find_thread_task(request.integration_id, channel=request.channel, thread_ts=request.thread_ts)
    if thread.task_id is not None:
        followup = _forward_followup(integration, request, task_id=thread.task_id, gate=False)
        return HandledMention(followup_task_id=thread.task_id, followup=followup)
    choice = _choose_repository(integration, text=request.text, workflow_id=request.workflow_id)
    if choice.needs_picker:
        return HandledMention(picker=list(choice.repositories))
    made = _create_task(integration, request, repository=choice.repository, gate=choice.chosen_by_model)
    return HandledMention(repository=choice.repository, task=made)


def _react_with_eyes(integration: Integration, *, channel: str, ts: str) -> None:
    """Acknowledge the mention with 👀; a courtesy, so a refusal (say, no `reactions:write`
    scope) is logged and the work goes on. A 429 still propagates: retrying is cheap and safe."""
    if not ts:
        return
    try:
        add_reaction(integration, channel=channel, ts=ts, name="eyes")
    except SlackRateLimited:
        raise
    except SlackPostError as error:
        logger.warning("Could not add the eyes reaction in %s: %s", channel, error)


def _thread_context(integration: Integration, request: MentionRequest, *, user_name, channel_name) -> list[str]:
    """The earlier messages of the thread the mention was made in (best effort; none for a new thread)."""
    if request.thread_ts == request.event_ts or not request.event_ts:
        return []
    client = get_slack_client(integration)
    try:
        response = call_slack(
            "conversations.replies",
            lambda: client.conversations_replies(channel=request.channel, ts=request.thread_ts, limit=THREAD_CONTEXT_MESSAGES),
        )
    except SlackRateLimited:
        raise
    except SlackPostError as error:
        logger.info("Could not read thread %s/%s for context: %s", request.channel, request.thread_ts, error)
        return []
    lines = []
    for message in response.get("messages") or []:
        if message.get("ts") == request.event_ts:
            continue
        author = user_name(message["user"]) if message.get("user") else (message.get("bot_id") or "someone")
        text = clean_mention_text(message.get("text") or "", user_name=user_name, channel_name=channel_name)
        if text:
            lines.append(f"@{author}: {text}")
    return lines
