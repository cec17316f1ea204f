"""What the Slack thread is told about a task run: one status message, the reaction, the outcome.

The task-run workflow's activities call these through `products.slack_app.facade`, one
call per activity. The rules, the same for both agent backends:

* One status message per run: posted once ("Working on it…"), then edited in place
  (`chat.update`) as the run moves and reports progress, and a last time when it ends.
* When the run ends, the mention's 👀 is swapped for ✅ (completed), ❌ (failed,
  cancelled) or 🛑 (out of AI credits).
* The outcome is posted once: the result (a pull-request card with buttons when the run
  has a URL), or the failure with a hint that fits its `error_kind`, or for
  `quota_limited` the usual quota denial text.
* Every post goes through `posting.post_once` keyed by the run's workflow id
  (`posthog-code-task-run-<run_id>`) and a step name, so activity retries and a worker killed mid-post
  never post twice; edits and reactions are idempotent by nature.
* Once Slack says the message, thread or channel is gone (`message_not_found`,
  `thread_not_found`, `channel_not_found`), nothing more is posted for that run: a
  ledger row (step `reporting_stopped`) remembers it across attempts and workers, and
  the result says `stopped` so the workflow stops calling.

The run's state is the tasks product's (`get_run`, or the snapshot the caller has just
had from it), so what the thread shows is what the task page shows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from products.tasks import facade as tasks
from products.tasks.facade import task_page_url

from . import messages
from .errors import SlackPostError, SlackRateLimited, TaskGone
from .mentions import get_integration
from .models import BotMessage, Integration
from .posting import Step, add_reaction, call_slack, post_once, update_message
from .slack_client import get_slack_client

logger = logging.getLogger(__name__)

# Step names in the post-once ledger (and the messages' Slack metadata).
STATUS_STEP = "status"
RESULT_STEP = "result"
FAILURE_STEP = "failure"
STOPPED_STEP = "reporting_stopped"  # a marker row, not a message: the thread or message is gone
STOPPED_TS = "stopped"

# Slack's answers meaning the thread (or the message the run reports on) is gone for good.
GONE_CODES = frozenset({"message_not_found", "thread_not_found", "channel_not_found"})

REACTION_WORKING = "eyes"
REACTION_BY_STATUS = {
    "completed": "white_check_mark",
    "failed": "x",
    "cancelled": "x",
    "quota_limited": "octagonal_sign",
}

# --- Texts ----------------------------------------------------------------------------------
# Kept here rather than in messages.py: they are only ever posted by this module.

STATUS_WAITING_TEXT = ":hourglass_flowing_sand: Waiting for a runner to pick this up…"
STATUS_WORKING_TEXT = ":hourglass_flowing_sand: Working on it…"
STATUS_FINAL_TEXT = {
    "completed": ":white_check_mark: Done.",
    "failed": ":x: This run failed.",
    "cancelled": ":x: This run was cancelled.",
    "quota_limited": ":octagonal_sign: Stopped: your team is out of AI credits.",
}
PR_BUTTON_TEXT = "View pull request"
TASK_BUTTON_TEXT = "View task"
PR_READY_TEXT = "Pull request ready: {pr_url}"
FAILURE_TEXT = "Sorry, this task failed: {error}"
CANCELLED_TEXT = "This task was cancelled. Mention me again in this thread to start it over."
NO_ANSWER_TEXT = "Done. (The run finished without a summary; see {url}.)"
FAILURE_HINTS = {
    "runner_lost": "The runner stopped responding, so I stopped this run. Mention me again in this thread to retry.",
    "agent_error": "The agent could not answer. Mention me again in this thread to retry; if it keeps failing, "
    "check the project's model settings.",
    "runner_error": "The runner reported an error. Details are on the task page: {url}",
    "cancelled": "The run was cancelled. Mention me again in this thread to start it over.",
}
DEFAULT_FAILURE_HINT = "Details are on the task page: {url}. Mention me again in this thread to retry."

# Slack's limits: 40,000 characters of text (we stay well below), 3,000 in a section block.
MAX_TEXT = 3900
MAX_SECTION = 2900


@dataclass(frozen=True)
class RunReportTarget:
    """Where a run reports: `key` is the run's workflow id (the post-once ledger key)."""

    integration_id: int
    run_id: int
    key: str
    channel: str
    thread_ts: str
    mention_ts: str = ""  # the mention whose 👀 is swapped at the end
    status_ts: str = ""  # the status message, once posted


@dataclass(frozen=True)
class RunReport:
    ts: str = ""  # the message posted or edited ("" if none)
    stopped: bool = False  # True: the thread or message is gone; nothing more is posted for this run


class _Gone(Exception):
    """Slack said the thread or message is gone (one of GONE_CODES)."""


def show_run_status(target: RunReportTarget, run: tasks.RunSnapshot | None = None) -> RunReport:
    """Post the run's status message once, or edit it in place to show the run's status and latest progress line.

    `run`: the run as the caller has just read or changed it (else it is read here).
    """
    integration, run = _load(target, run)
    if _is_stopped(target):
        return RunReport(stopped=True)
    text = status_text(run)
    try:
        return RunReport(ts=_show_status(integration, target, text))
    except _Gone:
        return _stop(target)


def post_run_reply(target: RunReportTarget, *, step: str, text: str) -> RunReport:
    """Post `text` (an answer given before the run ends) in the thread, once per `step`."""
    integration = get_integration(target.integration_id)
    if _is_stopped(target):
        return RunReport(stopped=True)
    try:
        ts = _post(integration, target, step, text=_trim(text, MAX_TEXT))
    except _Gone:
        return _stop(target)
    return RunReport(ts=ts)


def report_run_outcome(target: RunReportTarget, run: tasks.RunSnapshot | None = None) -> RunReport:
    """Tell the thread the run has ended: final status edit, reaction swap, the outcome posted once.

    Called when the run is terminal; a run still under way is reported as it stands
    (nothing is posted but the status edit). `run`: the run as the caller has just
    finished or read it (else it is read here).
    """
    integration, run = _load(target, run)
    ledger = dict(BotMessage.objects.filter(key=target.key, step__in=(STOPPED_STEP, STATUS_STEP)).values_list("step", "ts"))
    if STOPPED_STEP in ledger:
        return RunReport(stopped=True)
    try:
        if not target.status_ts and STATUS_STEP in ledger:
            # A status message was posted (or its post begun) by a step whose answer was lost
            # (a worker killed mid-post): find it again (post_once), so it is edited below.
            target = replace(target, status_ts=_post(integration, target, STATUS_STEP, text=status_text(run)))
        if target.status_ts:
            _show_status(integration, target, status_text(run))
        if not run.is_terminal:
            return RunReport(ts=target.status_ts)
        _swap_reaction(integration, target, REACTION_BY_STATUS.get(run.status, "x"))
        if run.status == "completed":
            ts = _post(integration, target, RESULT_STEP, **result_message(run))
        else:
            ts = _post(integration, target, FAILURE_STEP, text=failure_text(run))
    except _Gone:
        return _stop(target)
    return RunReport(ts=ts)


# --- Rendering ------------------------------------------------------------------------------


def status_text(run) -> str:
    """The status message for `run` (a `RunSnapshot`): what it is doing now, or how it ended."""
    if run.is_terminal:
        text = STATUS_FINAL_TEXT.get(run.status, f"Finished: {run.status}.")
    elif run.status == "queued" and run.backend == "external":
        text = STATUS_WAITING_TEXT
    else:
        text = STATUS_WORKING_TEXT
        if run.progress:
            text += f"\n> {_trim(run.progress, 200)}"
    return f"{text}  <{task_page_url(run.task_id)}|Task page>"


def result_message(run) -> dict[str, Any]:
    """The completed run's message: its summary, or a pull-request card with buttons when it has a URL."""
    url = task_page_url(run.task_id)
    summary = run.summary.strip() or NO_ANSWER_TEXT.format(url=url)
    if not run.pr_url:
        return {"text": _trim(summary, MAX_TEXT)}
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _trim(summary, MAX_SECTION)}},
        {
            "type": "actions",
            "block_id": "task_run_result",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": PR_BUTTON_TEXT},
                    "action_id": "view_pull_request",
                    "url": run.pr_url,
                    "style": "primary",
                },
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": TASK_BUTTON_TEXT},
                    "action_id": "view_task",
                    "url": url,
                },
            ],
        },
    ]
    return {"text": _trim(f"{PR_READY_TEXT.format(pr_url=run.pr_url)}\n{summary}", MAX_TEXT), "blocks": blocks}


def failure_text(run) -> str:
    """The ended-without-success message: the quota denial, the cancellation, or the error with a hint for its kind."""
    if run.status == "quota_limited" or run.error_kind == "quota_limited":
        return messages.quota_denial_text()
    if run.status == "cancelled":
        return CANCELLED_TEXT
    url = task_page_url(run.task_id)
    hint = FAILURE_HINTS.get(run.error_kind, DEFAULT_FAILURE_HINT).format(url=url)
    error = _trim(run.error.strip() or "no reason was given", 1000)
    return _trim(f"{FAILURE_TEXT.format(error=error)}\n{hint}", MAX_TEXT)


# --- Slack ----------------------------------------------------------------------------------


def _load(target: RunReportTarget, run: tasks.RunSnapshot | None = None):
    integration = get_integration(target.integration_id)
    if run is not None:
        return integration, run
    try:
        run = tasks.get_run(target.run_id)
    except tasks.RunNotFound:
        raise TaskGone(f"Task run #{target.run_id} no longer exists") from None
    return integration, run


def _show_status(integration: Integration, target: RunReportTarget, text: str) -> str:
    """Edit the status message if it exists, else post it (once)."""
    if target.status_ts:
        _call(lambda: update_message(integration, channel=target.channel, ts=target.status_ts, text=text))
        return target.status_ts
    return _post(integration, target, STATUS_STEP, text=text)


def _post(integration: Integration, target: RunReportTarget, step: str, **message: Any) -> str:
    return _call(
        lambda: post_once(integration, Step(target.key, step), channel=target.channel, thread_ts=target.thread_ts, **message)
    ) or ""


def _swap_reaction(integration: Integration, target: RunReportTarget, name: str) -> None:
    """Replace 👀 on the mention with `name`. A courtesy: a refusal other than "gone" (a missing scope) is logged."""
    if not target.mention_ts:
        return
    client = get_slack_client(integration)
    try:
        _call(lambda: _remove_reaction(client, target, REACTION_WORKING))
        _call(lambda: add_reaction(integration, channel=target.channel, ts=target.mention_ts, name=name))
    except SlackRateLimited:
        raise
    except SlackPostError as error:
        logger.warning("Could not swap the reaction on %s/%s: %s", target.channel, target.mention_ts, error)


def _remove_reaction(client, target: RunReportTarget, name: str) -> None:
    try:
        call_slack("reactions.remove", lambda: client.reactions_remove(channel=target.channel, timestamp=target.mention_ts, name=name))
    except SlackPostError as error:
        if error.code != "no_reaction":
            raise


def _call(fn):
    """Run one Slack step; "gone" answers become `_Gone`, other failures propagate (the activity retries them)."""
    try:
        return fn()
    except SlackPostError as error:
        if error.code in GONE_CODES:
            raise _Gone(error.code) from error
        raise


def _is_stopped(target: RunReportTarget) -> bool:
    return BotMessage.objects.filter(key=target.key, step=STOPPED_STEP).exists()


def _stop(target: RunReportTarget) -> RunReport:
    """Remember, for every later attempt and worker, that this run posts nothing more."""
    logger.info("The Slack thread of run #%s is gone; no more posts for it", target.run_id)
    BotMessage.objects.get_or_create(
        key=target.key, step=STOPPED_STEP, defaults={"channel": target.channel, "thread_ts": target.thread_ts, "ts": STOPPED_TS}
    )
    return RunReport(stopped=True)


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
