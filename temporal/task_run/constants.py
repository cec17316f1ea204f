"""Names other parts of the system rely on (the issue 9 contract). Keep them stable.

The workflow type and the workflow id are recorded in Temporal and used by
`temporal.client` (start, `run_changed` / `followup` signals); renaming either strands
the executions that are open.
"""

TASK_RUN_WORKFLOW_TYPE = "posthog-code-task-processing"

SIGNAL_RUN_CHANGED = "run_changed"  # the runner REST API changed the run (claim, progress, finish)
SIGNAL_FOLLOWUP = "followup"  # a follow-up was stored on the run (the Slack follow-up path)

# Agent backends (the same values as products.tasks.facade.AGENT_BACKEND_*; this module cannot import it).
BACKEND_BUILTIN = "builtin"
BACKEND_EXTERNAL = "external"

# Run statuses (products.tasks' TaskRun.Status values).
STATUS_QUEUED = "queued"
STATUS_IN_PROGRESS = "in_progress"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"
STATUS_QUOTA_LIMITED = "quota_limited"

# Error kinds the workflow itself gives a run when it fails it.
ERROR_KIND_AGENT = "agent_error"
ERROR_KIND_QUOTA = "quota_limited"


def task_run_workflow_id(run_id: int) -> str:
    """One workflow per run, however often it is started."""
    return f"posthog-code-task-run-{run_id}"


# Activity names: recorded in every history, so renaming one breaks replay of open executions.
# The workflow calls activities by these names (it never imports the activities module,
# which loads Django); temporal/worker.py registers the functions under them.
SYNC_TASK_RUN_ACTIVITY = "sync_task_run_activity"  # start / read / stale-check the run + its status message
ANSWER_TASK_RUN_ACTIVITY = "answer_task_run_activity"
CONCLUDE_TASK_RUN_ACTIVITY = "conclude_task_run_activity"  # finish the run + report the outcome in the thread
POST_RUN_REPLY_ACTIVITY = "post_run_reply_activity"

# Error types the activities raise; all but the rate limit are never retried (retrying cannot fix them).
RUN_NOT_FOUND_ERROR = "RunNotFound"  # the run (or its task) was deleted
AGENT_REFUSED_ERROR = "AgentRefused"  # the gateway refused the agent's call for good (4xx other than 429)
INTEGRATION_NOT_FOUND_ERROR = "IntegrationNotFound"  # same value as the mention workflow's
SLACK_PERMANENT_ERROR = "SlackPermanentError"  # same value as the mention workflow's
SLACK_RATE_LIMITED_ERROR = "SlackRateLimited"  # retried after Slack's Retry-After
