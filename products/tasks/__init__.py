"""Coding tasks: Task, TaskRun (resumable), TaskFollowUp, each run's history (TaskRunEvent) and the
project's agent backend (AgentSettings). Other products change them only through facade.py:
services.py creates tasks and follow-ups, runs.py moves runs through their lifecycle (the
workflow's side and the external runners' REST protocol, runner_api.py)."""
