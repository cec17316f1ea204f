"""Signals the billing product sends for other products to act on.

Billing depends on no product but accounts, so it cannot post to Slack itself: it
announces what is due and the products that can deliver it (the Slack app) connect
receivers. Exported through `products.billing.facade`.
"""
from __future__ import annotations

from dataclasses import dataclass

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


quota_recomputed = Signal()
"""A quota recomputation (not a dry run) has written its results.

Sent after every successful run as
`quota_recomputed.send_robust(sender="billing", organization_ids=<list[int]>)`, naming
the organizations it checked. The Slack app answers by refreshing the Home tabs of
those organizations' workspaces (in the background). Receivers' errors are logged.
"""


@dataclass(frozen=True)
class BillingNotice:
    """Something an organization's admins must act on, shown on the billing page (e.g. a broken Slack app)."""

    text: str
    link: str = ""
    link_text: str = ""


billing_page_notices = Signal()
"""The billing page asks other products what a member should be told about an organization.

Sent as `billing_page_notices.send_robust(sender="billing", organization=<Organization>, user=<User>)`;
each receiver returns a `list[BillingNotice]` (empty when there is nothing, or when
`user` is not someone who can act on it). A receiver that raises is logged and skipped.
"""
