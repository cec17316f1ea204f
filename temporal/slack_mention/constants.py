"""Names other parts of the system rely on (see DESIGN.md, "Temporal"). Keep them stable."""

WORKFLOW_TYPE = "posthog-code-slack-mention-processing"

SIGNAL_REPO_SELECTED = "repo_selected"
SIGNAL_NO_REPO_NEEDED = "no_repo_needed"


def mention_workflow_id(slack_team_id: str, slack_event_id: str) -> str:
    """One workflow per Slack event, however often Slack delivers it."""
    return f"posthog-code-mention-{slack_team_id}:{slack_event_id}"
