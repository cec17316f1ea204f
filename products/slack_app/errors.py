"""Why a Slack request was refused: small typed errors, mapped to responses in one place (views.py)."""
from __future__ import annotations


class SlackRequestError(Exception):
    """Base: an HTTP status, a short machine code and a human reason (never a secret)."""

    status = 400
    code = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidSignature(SlackRequestError):
    status = 401
    code = "invalid_signature"


class MalformedRequest(SlackRequestError):
    status = 400
    code = "malformed_request"


class BodyTooLarge(SlackRequestError):
    status = 413
    code = "body_too_large"


class TryAgainLater(SlackRequestError):
    """We could not do the work now (Temporal unreachable); Slack should deliver again."""

    status = 503
    code = "temporarily_unavailable"


# --- What the mention steps (products.slack_app.facade) raise to their callers ---------------
# The Temporal activities map these to retry behaviour in one place (temporal/slack_mention/activities.py).


class MentionStepError(Exception):
    """Base of the errors a mention step raises; `retryable` says whether trying again can help."""

    retryable = True


class IntegrationGone(MentionStepError):
    """The Slack integration was deleted; retrying cannot bring it back."""

    retryable = False


class TaskGone(MentionStepError):
    """The thread's task was deleted; retrying cannot bring it back."""

    retryable = False


class UnknownMessageKind(MentionStepError):
    """A fixed message kind this code does not know (a workflow newer than its worker)."""

    retryable = False


class SlackPostError(MentionStepError):
    """Slack did not take a call. `code` is Slack's error code (or the HTTP status / exception)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class SlackRateLimited(SlackPostError):
    """Slack answered 429: try again after `retry_after` seconds (never slept on in process)."""

    def __init__(self, message: str, *, retry_after: int, code: str = "ratelimited") -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class SlackRefused(SlackPostError):
    """Slack refused for a reason no retry fixes (revoked token, missing scope, channel gone...)."""

    retryable = False


class SlackUnavailable(SlackPostError):
    """Slack failed in a way a later attempt may not (5xx, timeout, connection refused)."""
