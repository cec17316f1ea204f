"""The Slack mention workflow: quota gate, repository routing, task creation, follow-ups."""
