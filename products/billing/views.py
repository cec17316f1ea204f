"""`GET /billing/`: an organization's plan, AI credits used this period, limits and what to do next.

The link in the quota denial ("Top up at ...") and the usage alerts (settings.BILLING_URL).
"""
from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from products.accounts.facade import member_organizations

from .signals import SENDER, BillingNotice, billing_page_notices
from .summary import billing_summary

logger = logging.getLogger(__name__)


@require_safe
@login_required
def billing_page(request: HttpRequest) -> HttpResponse:
    """Show each organization the member belongs to, or only `?organization=<id>`.

    Someone who is not a member (of any organization, or of the one asked for) gets a 404,
    which says nothing about which organizations exist.
    """
    mine = list(member_organizations(request.user))
    chosen = request.GET.get("organization")
    shown = mine if chosen is None else [org for org in mine if str(org.pk) == chosen]
    if not shown:
        raise Http404("No organization of yours.")
    now = timezone.now()
    summaries = [billing_summary(org, now) for org in shown]
    for summary in summaries:
        summary.notices.extend(_notices(summary.organization, request.user))
    context = {"summaries": summaries, "organizations": mine, "chosen": chosen}
    return render(request, "billing/billing_page.html", context)


def _notices(organization, user) -> list[BillingNotice]:
    """What other products ask this member to act on for `organization` (a receiver's failure is logged, not shown)."""
    notices: list[BillingNotice] = []
    for receiver, result in billing_page_notices.send_robust(sender=SENDER, organization=organization, user=user):
        if isinstance(result, Exception):
            logger.error("a billing_page_notices receiver (%s) failed: %r", receiver, result)
        elif result:
            notices.extend(n for n in result if isinstance(n, BillingNotice))
    return notices
