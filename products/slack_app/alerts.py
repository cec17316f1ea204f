"""Usage alerts in Slack: the receiver of billing's `usage_alert_due` signal.

Billing decides when an organization is told it is running out of AI credits and
sends `products.billing.facade.usage_alert_due` with `organization_id` and `text`;
this posts the text to the alerts channel of each of the organization's Slack
integrations (one post per workspace and channel) through the one posting policy,
and answers where it went: the channel ids, or "failed: <channel>" for a post Slack
did not take. No alerts channel anywhere: an empty list (billing logs the alert).
"""
from __future__ import annotations

import logging
from typing import Any

from .errors import SlackPostError
from .models import Integration
from .posting import post_message

logger = logging.getLogger(__name__)


def alert_targets(organization_id: int) -> list[Integration]:
    """The organization's Slack integrations that have an alerts channel, one per workspace and channel."""
    targets: list[Integration] = []
    seen: set[tuple[str, str]] = set()
    for integration in Integration.objects.filter(project__organization_id=organization_id).order_by("id"):
        channel = integration.alerts_channel
        key = (integration.integration_id, channel or "")
        if channel and key not in seen:
            seen.add(key)
            targets.append(integration)
    return targets


def deliver_usage_alert(sender: Any = None, *, organization_id: int, text: str, **kwargs: Any) -> list[str]:
    """Post `text` to the organization's alerts channels; return where it was delivered (see the module docstring)."""
    delivered: list[str] = []
    for integration in alert_targets(organization_id):
        channel = integration.alerts_channel
        try:
            post_message(integration, channel=channel, text=text)
        except SlackPostError as error:
            logger.error("could not post the usage alert for org %s to %s: %s", organization_id, channel, error)
            delivered.append(f"failed: {channel}")
            continue
        except Exception:  # noqa: BLE001 - e.g. a token that no longer decrypts: other channels still get theirs
            logger.exception("could not post the usage alert for org %s to %s", organization_id, channel)
            delivered.append(f"failed: {channel}")
            continue
        delivered.append(channel)
    return delivered


def connect_usage_alerts() -> bool:
    """Connect `deliver_usage_alert` to billing's signal, if billing has it; True if connected.

    Guarded so that startup never breaks while billing has not shipped the signal yet.
    """
    from products.billing import facade as billing

    signal = getattr(billing, "usage_alert_due", None)
    if signal is None:
        logger.info("products.billing.facade.usage_alert_due not available; Slack usage alerts not connected")
        return False
    signal.connect(deliver_usage_alert, dispatch_uid="slack_app.deliver_usage_alert")
    return True
