"""Signals the billing product sends for other products to act on.

Billing depends on no product but accounts, so it cannot post to Slack itself: it
announces what is due and the products that can deliver it (the Slack app) connect
receivers. Exported through `products.billing.facade`.
"""
from __future__ import annotations

from django.dispatch import Signal

SENDER = "billing"

usage_alert_due = Signal()
"""An organization crossed a usage threshold and should be told.

Sent once per alert, after the alert's record is committed, as
`usage_alert_due.send_robust(sender="billing", organization_id=<int>, text=<str>)`.
Each receiver returns a `list[str]` of where it delivered the text: channel ids, or
`"failed: <channel>"` for a destination it could not post to; an empty list when the
organization has nowhere to receive it. A receiver that raises is logged and counted
as a failure; it never stops the recomputation.
"""
