"""Single-use, expiring OAuth `state` values, kept in the database (slack_sdk's `OAuthStateStore` interface).

A state is issued when a flow starts ("Add to Slack", "Sign in with Slack") and bound
to whoever started it: the signed-in user for an install, a nonce kept in the browser's
session for a sign-in. `claim` checks it when Slack sends the browser back and spends
it in the same UPDATE, so a replayed callback finds it used. Every refusal is a typed
error with the page to show (a 400): missing, unknown, used, expired, someone else's.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from logging import Logger

from django.db import transaction
from django.utils import timezone
from slack_sdk.oauth.state_store import OAuthStateStore

from .models import OAuthState

logger = logging.getLogger(__name__)

# Slack's own OAuth helpers keep a state 10 minutes: long enough to read the consent screen.
STATE_TTL = timedelta(minutes=10)


class StateError(Exception):
    """The callback's `state` cannot be accepted; `reason` is shown to the person (never a secret)."""

    status = 400
    code = "invalid_state"
    title = "This link cannot be used"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StateMissing(StateError):
    code = "state_missing"


class StateUnknown(StateError):
    code = "state_unknown"


class StateReused(StateError):
    code = "state_reused"


class StateExpired(StateError):
    code = "state_expired"


class StateOfSomeoneElse(StateError):
    code = "state_other_user"


def user_binding(user) -> str:
    return f"user:{user.pk}"


def session_binding(nonce: str) -> str:
    return "session:" + hashlib.sha256(nonce.encode()).hexdigest()


class DatabaseOAuthStateStore(OAuthStateStore):
    """slack_sdk's state store interface over the `OAuthState` table, with what the bare interface lacks:
    a purpose, a binding to the person who started the flow, and the project or page it is for."""

    def __init__(self, purpose: str, ttl: timedelta = STATE_TTL) -> None:
        self.purpose = purpose
        self.ttl = ttl

    @property
    def logger(self) -> Logger:
        return logger

    def issue(self, *, binding: str, project=None, next_url: str = "", **kwargs) -> str:  # type: ignore[override]
        """Store a new random state for this purpose and binding; return it (it goes into the authorize URL)."""
        state = secrets.token_urlsafe(32)
        now = timezone.now()
        OAuthState.objects.create(
            state=state, purpose=self.purpose, binding=binding, project=project, next_url=next_url[:500],
            created_at=now, expires_at=now + self.ttl,
        )
        return state

    def consume(self, state: str) -> bool:
        """The bare interface: spend `state` if it is live, whoever it is bound to; True if it was."""
        return (
            OAuthState.objects.filter(
                state=state, purpose=self.purpose, consumed_at__isnull=True, expires_at__gt=timezone.now()
            ).update(consumed_at=timezone.now())
            == 1
        )

    def claim(self, state: str | None, *, binding: str) -> OAuthState:
        """Check `state` against its binding and spend it; return its row. Raises a `StateError` saying why not.

        A state presented by someone it is not bound to is refused without being spent
        (the person who started the flow can still finish it).
        """
        if not state:
            raise StateMissing("The link from Slack has no state. Start again from the button.")
        with transaction.atomic():
            row = OAuthState.objects.select_for_update().filter(state=state[:64], purpose=self.purpose).first()
            if row is None:
                raise StateUnknown("This link from Slack is not one we started. Start again from the button.")
            if row.consumed_at is not None:
                raise StateReused("This link from Slack has already been used. Start again from the button.")
            if row.binding != binding:
                logger.warning("OAuth %s state #%s presented by someone it is not bound to", self.purpose, row.pk)
                raise StateOfSomeoneElse(
                    "This link from Slack was started by someone else (or in another browser). Start again from the button."
                )
            now = timezone.now()
            if row.expires_at <= now:
                raise StateExpired("This link from Slack has expired (it is valid for 10 minutes). Start again from the button.")
            row.consumed_at = now
            row.save(update_fields=["consumed_at"])
        return row


def prune_states(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete states that expired more than `older_than` ago; return how many."""
    deleted, _ = OAuthState.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
