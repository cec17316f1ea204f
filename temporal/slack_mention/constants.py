"""Names other parts of the system rely on (see DESIGN.md, "Temporal"). Keep them stable."""

WORKFLOW_TYPE = "posthog-code-slack-mention-processing"

SIGNAL_REPO_SELECTED = "repo_selected"
SIGNAL_NO_REPO_NEEDED = "no_repo_needed"


def mention_workflow_id(slack_team_id: str, slack_event_id: str) -> str:
    """One workflow per Slack event, however often Slack delivers it."""
    return f"posthog-code-mention-{slack_team_id}:{slack_event_id}"


# Activity names: recorded in every history, so renaming one breaks replay of open executions.
# The workflow calls activities by these names (it never imports the activities module,
# which loads Django); temporal/worker.py registers the functions under them.
ENFORCE_BILLING_QUOTA_ACTIVITY = "enforce_billing_quota_activity"
FIND_THREAD_TASK_ACTIVITY = "find_thread_task_activity"
ROUTE_REPOSITORY_ACTIVITY = "route_repository_activity"
POST_REPO_PICKER_ACTIVITY = "post_repo_picker_activity"
POST_THREAD_MESSAGE_ACTIVITY = "post_thread_message_activity"
CREATE_TASK_FOR_REPO_ACTIVITY = "create_task_for_repo_activity"
FORWARD_FOLLOWUP_ACTIVITY = "forward_followup_activity"
# The usual path in one step (quota gate, thread lookup, follow-up or routing, task creation); since patch ONE_STEP_PATCH.
HANDLE_MENTION_ACTIVITY = "handle_mention_activity"

# Error types the activities raise. The not-found, permanent and unknown-kind ones are never retried (retrying cannot fix
# them); a rate limit is retried after Slack's Retry-After.
INTEGRATION_NOT_FOUND_ERROR = "IntegrationNotFound"
TASK_NOT_FOUND_ERROR = "TaskNotFound"
SLACK_PERMANENT_ERROR = "SlackPermanentError"  # e.g. revoked token, missing scope, channel gone
SLACK_RATE_LIMITED_ERROR = "SlackRateLimited"
UNKNOWN_MESSAGE_KIND_ERROR = "UnknownMessageKind"  # never retried: a workflow newer than its worker
