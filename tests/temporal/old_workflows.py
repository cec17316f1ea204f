"""Other versions of the Slack mention workflow, for the versioning proof (test-only, Django-free).

They are registered under the real workflow type, like a deploy of that code would be.
Kept out of the test modules because Temporal's sandbox re-imports the module that
defines a workflow class, and these must not pull in pytest or Django.
"""
from __future__ import annotations

from temporalio import workflow

from temporal.slack_mention.constants import WORKFLOW_TYPE
from temporal.slack_mention.patches import BILLING_GATE_PATCH
from temporal.slack_mention.types import OUTCOME_QUOTA_LIMITED, SlackMentionWorkflowInput, SlackMentionWorkflowResult
from temporal.slack_mention.workflows import SlackMentionWorkflow, _Mention


@workflow.defn(name=WORKFLOW_TYPE)
class SlackMentionWorkflowBeforeBillingGate(SlackMentionWorkflow):
    """The workflow as deployed before the billing gate: straight to the thread lookup, no patch call."""

    @workflow.run
    async def run(self, inp: SlackMentionWorkflowInput) -> SlackMentionWorkflowResult:
        return await super().run(inp)

    async def _process(self, inp: SlackMentionWorkflowInput, mention: _Mention) -> SlackMentionWorkflowResult:
        return await self._handle_mention(inp, mention)


@workflow.defn(name=WORKFLOW_TYPE)
class SlackMentionWorkflowUnguardedGate(SlackMentionWorkflow):
    """What adding the gate WITHOUT `workflow.patched` would look like: breaks old histories."""

    @workflow.run
    async def run(self, inp: SlackMentionWorkflowInput) -> SlackMentionWorkflowResult:
        return await super().run(inp)

    async def _process(self, inp: SlackMentionWorkflowInput, mention: _Mention) -> SlackMentionWorkflowResult:
        if await self._quota_limited(inp, mention):
            return SlackMentionWorkflowResult(outcome=OUTCOME_QUOTA_LIMITED)
        return await self._handle_mention(inp, mention)


@workflow.defn(name=WORKFLOW_TYPE)
class SlackMentionWorkflowBeforeOneStep(SlackMentionWorkflow):
    """The workflow as deployed before the one step: the billing gate, then one activity per step."""

    @workflow.run
    async def run(self, inp: SlackMentionWorkflowInput) -> SlackMentionWorkflowResult:
        return await super().run(inp)

    async def _process(self, inp: SlackMentionWorkflowInput, mention: _Mention) -> SlackMentionWorkflowResult:
        if workflow.patched(BILLING_GATE_PATCH) and await self._quota_limited(inp, mention):
            return SlackMentionWorkflowResult(outcome=OUTCOME_QUOTA_LIMITED)
        return await self._handle_mention(inp, mention)


@workflow.defn(name=WORKFLOW_TYPE)
class SlackMentionWorkflowUnguardedOneStep(SlackMentionWorkflow):
    """What switching to the one step WITHOUT `workflow.patched` would look like: breaks the earlier histories."""

    @workflow.run
    async def run(self, inp: SlackMentionWorkflowInput) -> SlackMentionWorkflowResult:
        return await super().run(inp)

    async def _process(self, inp: SlackMentionWorkflowInput, mention: _Mention) -> SlackMentionWorkflowResult:
        return await self._handle_in_one_step(inp, mention)
