"""Workflow inputs and outputs. New fields get defaults so old callers and histories keep working."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SlackMentionWorkflowInput:
    event: dict[str, Any]  # the Slack `app_mention` event, as received
    integration_id: int  # our Integration's primary key
    slack_team_id: str  # the Slack workspace id (envelope `team_id`)
    event_id: str  # the envelope's `event_id`
    extra: dict[str, Any] = field(default_factory=dict)
