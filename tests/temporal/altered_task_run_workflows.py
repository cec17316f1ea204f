"""Task-run workflow variants for the versioning test, in a module of their own (the workflow sandbox
imports it: nothing from Django here)."""
from __future__ import annotations

from temporalio import workflow

from temporal.task_run.constants import TASK_RUN_WORKFLOW_TYPE
from temporal.task_run.types import TaskRunWorkflowInput, TaskRunWorkflowResult
from temporal.task_run.workflows import TaskRunWorkflow


@workflow.defn(name=TASK_RUN_WORKFLOW_TYPE)
class TaskRunWorkflowWithoutStatusMessage(TaskRunWorkflow):
    """Today's workflow minus the status message: a change that would need a patch."""

    async def _show_status(self, state) -> None:
        return None

    @workflow.run
    async def run(self, inp: TaskRunWorkflowInput) -> TaskRunWorkflowResult:
        return await super().run(inp)
