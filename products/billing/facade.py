"""The billing product's public module: the only one other products and `temporal/` import.

Quota state (`is_team_limited` is the one answer to "is this project limited for this
resource"), operator changes to it, and usage recording.
"""
from __future__ import annotations

from .quota_limiting import QuotaResource, QuotaStateUnavailable, is_team_limited
from .services import Actor, QuotaChangeError, clear_quota_limit, set_quota_limit

__all__ = [
    "Actor",
    "QuotaChangeError",
    "QuotaResource",
    "QuotaStateUnavailable",
    "clear_quota_limit",
    "is_team_limited",
    "set_quota_limit",
]
