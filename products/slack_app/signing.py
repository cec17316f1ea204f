"""Checks that a request really comes from Slack, before anything else looks at it."""
from __future__ import annotations

import logging
from collections.abc import Mapping

from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from slack_sdk.signature import SignatureVerifier

from .errors import BodyTooLarge, InvalidSignature

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few KiB; refuse anything over 1 MiB unread.


def check_body_size(content_length: str | None) -> None:
    """Refuse a body over 1 MiB from its declared length, before reading it."""
    try:
        length = int(content_length or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}")


MAX_TIMESTAMP_DIGITS = 12  # Unix seconds have 10 digits until the year 2286


@sensitive_variables("secret", "verifier")
def verify_slack_signature(body: bytes, headers: Mapping[str, str]) -> None:
    """Raise InvalidSignature unless `body` is signed with our signing secret within the last 5 minutes.

    Uses slack_sdk's SignatureVerifier (v0 HMAC-SHA256 of `v0:{timestamp}:{body}`, constant-time
    compare, 5-minute window against replays). With no signing secret configured every request
    is refused: an empty key would let anyone sign. Any failure while verifying (a
    400-digit timestamp overflows slack_sdk's clock arithmetic) is a refusal, never a 500,
    and the secret is kept out of error reports (`sensitive_variables`).
    """
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body exceeds the limit of {MAX_BODY_BYTES} bytes")
    secret = settings.SLACK_SIGNING_SECRET
    if not secret or not secret.strip():
        logger.error("SLACK_SIGNING_SECRET is not set; refusing every Slack request")
        raise InvalidSignature("signing secret not configured")
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        raise InvalidSignature("missing X-Slack-Signature or X-Slack-Request-Timestamp")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise InvalidSignature("X-Slack-Request-Timestamp is not Unix seconds")
    try:
        verifier = SignatureVerifier(secret)
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except Exception as exc:  # noqa: BLE001 - whatever goes wrong while verifying, the request is not verified
        logger.warning("could not verify a Slack signature: %s", type(exc).__name__)
        valid = False
    if not valid:
        raise InvalidSignature("bad signature or stale timestamp")
