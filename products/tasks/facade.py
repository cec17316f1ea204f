"""The tasks product's public module: the only one other products and `temporal/` import.

Tasks, their runs and follow-ups are changed only through these services. The task-run
workflow drives a run with `start_run` / `record_progress` / `finish_run` (built-in agent)
or watches it with `get_run` / `fail_if_stale` (external runners, which report through the
REST API); all of them are idempotent, so retried activities are safe.
"""
from __future__ import annotations

from .models import Task, TaskFollowUp, TaskRun
from .runs import (
    AGENT_BACKEND_BUILTIN,
    AGENT_BACKEND_EXTERNAL,
    FollowUpItem,
    InvalidRunInput,
    RunError,
    RunNotFound,
    RunSnapshot,
    agent_backend_for,
    fail_if_stale,
    finish_run,
    followups_since,
    get_run,
    record_progress,
    run_credits,
    start_run,
)
from .services import CreatedTask, FollowUpResult, add_followup, create_task, task_page_url

__all__ = [
    "AGENT_BACKEND_BUILTIN",
    "AGENT_BACKEND_EXTERNAL",
    "CreatedTask",
    "FollowUpItem",
    "FollowUpResult",
    "InvalidRunInput",
    "RunError",
    "RunNotFound",
    "RunSnapshot",
    "Task",
    "TaskFollowUp",
    "TaskRun",
    "add_followup",
    "agent_backend_for",
    "create_task",
    "fail_if_stale",
    "finish_run",
    "followups_since",
    "get_run",
    "record_progress",
    "run_credits",
    "start_run",
    "task_page_url",
]
