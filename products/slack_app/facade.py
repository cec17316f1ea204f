"""The Slack app product's public module: the only one other products and `temporal/` import.

Everything the mention workflow's activities do with a Slack mention lives behind these
functions (one call per activity): the quota gate and its denial, the thread's task,
the repository choice and picker, the fixed messages, the task with its thread and
"On it", and follow-ups; and `handle_mention`, the usual steps of those in one call. The task-run workflow's Slack side (`run_reports`): the
status message, the reaction swap and the run's outcome. They raise the typed errors below; the activities map them
to Temporal's retry rules (`retryable`, and `SlackRateLimited.retry_after`).

Also: connecting a workspace by hand (`bootstrap_demo`); the mention inbox's relay (`run_relay`,
`MentionRelay`), which the worker process runs, and its backlog (`backlog`).
"""
from __future__ import annotations

from .errors import (
    IntegrationGone,
    MentionStepError,
    SlackPostError,
    SlackRateLimited,
    SlackRefused,
    SlackUnavailable,
    TaskGone,
    UnknownMessageKind,
)
from .mentions import (
    ForwardedFollowup,
    HandledMention,
    MentionRequest,
    MentionTask,
    RepositoryChoice,
    ThreadTask,
    choose_repository,
    create_task_for_mention,
    enforce_quota,
    find_thread_task,
    forward_followup,
    handle_mention,
    post_fixed_message,
    post_repo_picker,
)
from .inbox import Backlog, backlog
from .models import Integration
from .relay import MentionRelay, run_relay
from .run_reports import RunReport, RunReportTarget, post_run_reply, report_run_outcome, show_run_status
from .workspaces import InvalidWorkspaceSettings, connect_workspace

__all__ = [
    "Backlog",
    "MentionRelay",
    "backlog",
    "run_relay",
    "ForwardedFollowup",
    "HandledMention",
    "Integration",
    "IntegrationGone",
    "InvalidWorkspaceSettings",
    "MentionRequest",
    "MentionStepError",
    "MentionTask",
    "RepositoryChoice",
    "RunReport",
    "RunReportTarget",
    "SlackPostError",
    "SlackRateLimited",
    "SlackRefused",
    "SlackUnavailable",
    "TaskGone",
    "ThreadTask",
    "UnknownMessageKind",
    "choose_repository",
    "connect_workspace",
    "create_task_for_mention",
    "enforce_quota",
    "find_thread_task",
    "forward_followup",
    "handle_mention",
    "post_fixed_message",
    "post_repo_picker",
    "post_run_reply",
    "report_run_outcome",
    "show_run_status",
]
