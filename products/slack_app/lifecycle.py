"""Workspace events other than mentions: uninstall, token revocation and the Home tab.

`events.handle_envelope` hands every verified non-mention event here first. Return a
short description when the event was acted on (the webhook answers 200 either way),
None when it is not one of ours (it is then ignored).
"""
from __future__ import annotations

from typing import Any


def handle_workspace_event(envelope: dict[str, Any], event: dict[str, Any]) -> str | None:
    """Act on `app_uninstalled`, `tokens_revoked` and `app_home_opened`; None for anything else."""
    return None
