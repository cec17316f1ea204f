"""The Slack app product's public module: the only one other products and `temporal/` import.

Everything the mention workflow's activities, the webhook and the interactivity view do
with a Slack mention lives behind these functions.
"""
from __future__ import annotations

from .models import Integration
from .workspaces import InvalidWorkspaceSettings, connect_workspace

__all__ = ["Integration", "InvalidWorkspaceSettings", "connect_workspace"]
