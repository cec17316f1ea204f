"""The task-run workflow: one per task run, runs it through an agent backend and reports to the Slack thread."""
