"""The one place a `slack_sdk.WebClient` is built for an integration.

Retries are configured here and nowhere else: a dropped connection is retried once;
a rate limit (429) is NOT retried in process. It surfaces as `SlackApiError` with
`response.status_code == 429` and the `Retry-After` header, so a Temporal activity can
fail with `next_retry_delay` instead of sleeping on a worker thread, and the webhook
never waits on Slack's rate limiter inside Slack's 3-second window.
"""
from __future__ import annotations

from django.conf import settings
from slack_sdk import WebClient
from django.views.decorators.debug import sensitive_variables
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from .models import Integration

TIMEOUT_SECONDS = 10


def slack_api_base_url() -> str:
    base = settings.SLACK_API_BASE_URL
    return base if base.endswith("/") else base + "/"


@sensitive_variables("token")
def get_slack_client(integration: Integration) -> WebClient:
    """Return a Web API client authenticated as the integration's bot (the token never shows in error reports)."""
    token = integration.bot_token or None
    return WebClient(
        token=token,
        base_url=slack_api_base_url(),
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
    )
