"""Task-run workflow variants for the versioning test, in a module of their own (the workflow sandbox
imports it: nothing from Django here)."""
from __future__ import annotations

from temporalio import workflow

from temporal.task_run.constants import TASK_RUN_WORKFLOW_TYPE
from temporal.task_run.types import TaskRunWorkflowInput, TaskRunWorkflowResult
from temporal.task_run.workflows import TaskRunWorkflow


@workflow.defn(name=TASK_RUN_WORKFLOW_TYPE)
class TaskRunWorkflowWithRegularFirstStep(TaskRunWorkflow):
    """Today's workflow with its first step (start the run, post the status message) a regular
    activity instead of a local one: the same work, a different command sequence, so a change
    that would need a patch."""

    async def _sync(self, *, start: bool = False, check_stale: bool = False, local: bool):
        return await super()._sync(start=start, check_stale=check_stale, local=False)

    @workflow.run
    async def run(self, inp: TaskRunWorkflowInput) -> TaskRunWorkflowResult:
        return await super().run(inp)


@workflow.defn(name=TASK_RUN_WORKFLOW_TYPE)
class TaskRunWorkflowBeforeAnswerConcludes(TaskRunWorkflow):
    """The first version: every built-in turn followed by the local conclude step (no patch call)."""

    def _answer_concludes(self) -> bool:
        return False

    @workflow.run
    async def run(self, inp: TaskRunWorkflowInput) -> TaskRunWorkflowResult:
        return await super().run(inp)

