"""The one place a `slack_sdk.WebClient` is built for an integration.

Retries are configured here and nowhere else: a dropped connection is retried once;
a rate limit (429) is NOT retried in process. It surfaces as `SlackApiError` with
`response.status_code == 429` and the `Retry-After` header, so a Temporal activity can
fail with `next_retry_delay` instead of sleeping on a worker thread, and the webhook
never waits on Slack's rate limiter inside Slack's 3-second window.

Two more things happen here, so that every caller gets them:

* Token rotation (when the Slack app has it on): a bot token that expires within
  `ROTATE_BEFORE_EXPIRY` is refreshed first with slack_sdk's `TokenRotator`, one refresh
  at a time per integration (a row lock: whoever waits re-reads the row and uses the
  token the first one stored).
* A call that Slack refuses with `invalid_auth`, `token_revoked` or `account_inactive`
  marks the integration broken (`workspaces.mark_broken`) before the error goes on to
  the caller's own handling (posting.call_slack classifies it as usual).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackTokenRotationError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.token_rotation import TokenRotator

from .models import Integration
from .workspaces import TOKEN_DEAD_ERRORS, mark_broken

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
# Refresh a rotating token this long before it expires (Slack's tokens live 12 hours).
ROTATE_BEFORE_EXPIRY = timedelta(minutes=10)


def slack_api_base_url() -> str:
    base = settings.SLACK_API_BASE_URL
    return base if base.endswith("/") else base + "/"


def app_client(token: str | None = None) -> WebClient:
    """A client for calls made as the Slack app rather than an installed bot (oauth.v2.access, openid.connect.*)."""
    return WebClient(
        token=token,
        base_url=slack_api_base_url(),
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
    )


class IntegrationWebClient(WebClient):
    """A `WebClient` that marks its integration broken when Slack says the token is dead."""

    def __init__(self, *args: Any, integration_id: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.integration_id = integration_id

    def api_call(self, api_method: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        try:
            return super().api_call(api_method, *args, **kwargs)
        except SlackApiError as error:
            code = _error_code(error)
            if code in TOKEN_DEAD_ERRORS and self.integration_id is not None:
                try:
                    mark_broken(self.integration_id, code)
                except Exception:  # noqa: BLE001 - the database is down: the caller still gets Slack's own error
                    logger.exception("could not mark Slack integration #%s broken (%s)", self.integration_id, code)
            raise


def _error_code(error: SlackApiError) -> str:
    try:
        return str((error.response or {}).get("error") or "")
    except Exception:  # noqa: BLE001 - a non-JSON answer
        return ""


@sensitive_variables("token")
def get_slack_client(integration: Integration) -> WebClient:
    """Return a Web API client authenticated as the integration's bot (the token never shows in error reports).

    A rotating token close to expiry is refreshed first (see the module docstring).
    """
    if _expiring(integration):
        refresh_token_if_expiring(integration)
    token = integration.bot_token or None
    return IntegrationWebClient(
        token=token,
        base_url=slack_api_base_url(),
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
        integration_id=integration.pk,
    )


def _expiring(integration: Integration) -> bool:
    expires = integration.token_expires_at
    return expires is not None and expires - timezone.now() <= ROTATE_BEFORE_EXPIRY


@sensitive_variables("bot", "rotated")
def refresh_token_if_expiring(integration: Integration) -> bool:
    """Refresh the integration's bot token if it expires soon; True if this call refreshed it.

    One refresh at a time: the row is locked (SELECT ... FOR UPDATE) and re-read, so a
    second caller waits, finds the fresh token and does not spend the refresh token again
    (Slack accepts each refresh token once). `integration` is updated in place. A refresh
    Slack refuses marks the integration broken; the stale token is then used and fails
    the caller's call as it would have anyway.
    """
    with transaction.atomic():
        current = Integration.objects.select_for_update().get(pk=integration.pk)
        if not _expiring(current) or not current.refresh_token:
            _copy_tokens(current, integration)
            return False
        bot = Bot(
            team_id=current.integration_id,
            bot_token=current.bot_token,
            bot_id="",
            bot_user_id=current.bot_user_id,
            bot_refresh_token=current.refresh_token,
            bot_token_expires_at=int(current.token_expires_at.timestamp()),
            installed_at=(current.installed_at or current.created_at).timestamp(),
        )
        rotator = TokenRotator(
            client_id=settings.SLACK_CLIENT_ID, client_secret=settings.SLACK_CLIENT_SECRET, client=app_client()
        )
        try:
            # minutes_before_expiration: we already decided it is due; rotate now.
            rotated = rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=int(ROTATE_BEFORE_EXPIRY.total_seconds() // 60) + 1
            )
        except SlackTokenRotationError as error:
            code = _error_code(error.api_error) or "token rotation failed"
            logger.error("could not refresh the bot token of Slack integration #%s: %s", current.pk, code)
            if code in TOKEN_DEAD_ERRORS or code in {"invalid_refresh_token", "invalid_grant"}:
                mark_broken(current.pk, code)
            return False
        except (SlackClientError, OSError) as error:  # Slack unreachable: the current token may still work a while
            logger.error("could not reach Slack to refresh the bot token of integration #%s: %r", current.pk, error)
            return False
        if rotated is None:
            logger.error("Slack did not refresh the bot token of integration #%s (not a bot token answer)", current.pk)
            return False
        expires_at = datetime.fromtimestamp(rotated.bot_token_expires_at, tz=dt_timezone.utc)
        current.set_tokens(rotated.bot_token, rotated.bot_refresh_token, expires_at)
        current.save(update_fields=["sensitive_config", "token_expires_at", "updated_at"])
        logger.info("refreshed the bot token of Slack integration #%s (expires %s)", current.pk, expires_at)
        _copy_tokens(current, integration)
        return True


def _copy_tokens(source: Integration, target: Integration) -> None:
    target.sensitive_config = source.sensitive_config
    target.token_expires_at = source.token_expires_at
