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
