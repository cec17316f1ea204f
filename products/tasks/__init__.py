"""Coding tasks: Task, TaskRun (resumable), TaskFollowUp. Other products change them only through services.py."""
