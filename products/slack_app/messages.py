"""Every text the bot posts and the picker's blocks. Posting them is `posting.py`'s job."""
from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from products.tasks.facade import task_page_url

QUOTA_DENIAL_TEXT = "Your team has used its monthly AI credits. Top up at {billing_url} to continue."
TRY_AGAIN_SHORTLY_TEXT = "I can't check your team's AI credits right now. Please try again shortly."
ON_IT_TEXT = "On it! Follow along at {url}"
APOLOGY_TEXT = "Sorry, something went wrong while starting this task. Please try again."
PICKER_PROMPT_TEXT = "Which repository should I work in?"
PICKER_TIMEOUT_TEXT = "I didn't hear back about which repository to use, so I've stopped. Mention me again to start over."
NO_REPOSITORY_LABEL = "No repository"
REPO_CHOSEN_TEXT = "<@{user}> picked *{repository}*."
NO_REPO_CHOSEN_TEXT = "<@{user}> picked no repository."
WORKFLOW_GONE_TEXT = "This request has expired or was already answered. Mention me again to start a new task."
TEMPORARILY_UNAVAILABLE_TEXT = "I couldn't pass that on just now. Please try again in a moment."
NOT_OFFERED_TEXT = "That isn't one of the repositories I offered. Please pick one of the buttons on the message."

# The fixed messages the workflow asks for by kind (temporal/slack_mention/types.py MESSAGE_*).
FIXED_MESSAGES = {
    "picker_timeout": PICKER_TIMEOUT_TEXT,
    "apology": APOLOGY_TEXT,
}

ACTION_REPO_SELECTED = "repo_selected"
ACTION_NO_REPO_NEEDED = "no_repo_needed"


def quota_denial_text() -> str:
    return QUOTA_DENIAL_TEXT.format(billing_url=settings.BILLING_URL)


def on_it_text(task_id: int) -> str:
    return ON_IT_TEXT.format(url=task_page_url(task_id))


def repo_picker_blocks(workflow_id: str, repositories: list[str]) -> list[dict[str, Any]]:
    """Blocks for the picker: one button per repository, plus "No repository"."""
    buttons: list[dict[str, Any]] = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": repository[:75]},
            "action_id": ACTION_REPO_SELECTED,
            # Slack requires action_ids to be unique within a block: block_id groups, value carries the choice.
            "value": json.dumps({"workflow_id": workflow_id, "repository": repository}),
        }
        for repository in repositories
    ]
    buttons.append(
        {
            "type": "button",
            "text": {"type": "plain_text", "text": NO_REPOSITORY_LABEL},
            "action_id": ACTION_NO_REPO_NEEDED,
            "value": json.dumps({"workflow_id": workflow_id}),
        }
    )
    # Slack allows 25 elements per actions block, and unique action_ids per block.
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": PICKER_PROMPT_TEXT}}]
    for i, button in enumerate(buttons):
        blocks.append({"type": "actions", "block_id": f"repo_picker_{i}", "elements": [button]})
    return blocks
