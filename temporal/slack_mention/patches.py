"""Patch ids for the Slack mention workflow, one constant each (see DESIGN.md, "Temporal").

A patch id is recorded in a workflow's history the first time new code takes the
patched branch; on replay `workflow.patched(id)` answers True only for histories
that carry the marker, so executions started by older code keep replaying the
steps they actually took.
"""

# Guards the quota-enforcement activity that now runs first in every mention workflow.
# Protects: histories recorded by the version without the billing gate (they go
# straight to the thread lookup; tests/temporal/histories/mention_before_billing_gate.json).
# Lifecycle: once no execution started before this patch shipped can still be open
# (the longest one waits 15 minutes on the repository picker, so one retention period
# after the deploy is plenty), replace `patched()` with `workflow.deprecate_patch()` and
# keep the gate unconditional; after the executions recorded with `patched()` have closed
# too, delete the call and this constant.
BILLING_GATE_PATCH = "posthog-code-slack-billing-gate"

# Guards the one-step path: a new execution runs `handle_mention_activity` (quota gate, thread
# lookup, follow-up or routing, task creation in one activity) instead of the four activities
# above, and goes on to the picker and `create_task_for_repo_activity` only when the rules
# cannot choose the repository. Protects: histories recorded before it (the billing gate, then
# one activity per step; tests/temporal/histories/mention_with_billing_gate.json and
# mention_before_billing_gate.json). Lifecycle: as BILLING_GATE_PATCH's.
ONE_STEP_PATCH = "posthog-code-slack-mention-one-step"
