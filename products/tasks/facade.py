"""The tasks product's public module: the only one other products and `temporal/` import.

Tasks, their runs and follow-ups are changed only through these services.
"""
from __future__ import annotations

from .models import Task, TaskFollowUp, TaskRun
from .services import CreatedTask, FollowUpResult, add_followup, create_task, task_page_url

__all__ = ["CreatedTask", "FollowUpResult", "Task", "TaskFollowUp", "TaskRun", "add_followup", "create_task", "task_page_url"]
