"""What can go wrong asking the model, in the three kinds the task-run workflow acts on differently.

`AgentQuotaExceeded`: the gateway said 429 (credits used up, live credits, a cost throttle):
the run ends `quota_limited` with the usual denial text. `AgentUnavailable`: worth retrying
(the gateway is down, a 5xx, a timeout). `AgentRefused`: retrying cannot help (any other 4xx:
a model the product does not allow, a bad token, ...), the run fails.
"""
from __future__ import annotations


class AgentError(Exception):
    """Base class: `message` says what happened, `status` is the gateway's HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class AgentQuotaExceeded(AgentError):
    """The gateway refused the call with a 429: the project is out of credits or throttled."""


class AgentUnavailable(AgentError):
    """The gateway could not be reached, timed out or answered 5xx (or an unusable 200): retry later."""


class AgentRefused(AgentError):
    """The gateway refused the call with a 4xx other than 429: the configuration is wrong, retrying cannot help."""
