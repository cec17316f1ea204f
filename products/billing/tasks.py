"""Celery tasks of the billing product (found by `app.autodiscover_tasks()`)."""
from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="products.billing.tasks.update_quota_limits", ignore_result=True)
def update_quota_limits() -> dict[str, int]:
    """Recompute quota limits from metered usage (scheduled at minutes 10, 25, 40 and 55).

    A run that finds another one still going does nothing: the next slot catches up.
    """
    from .recompute import RecomputeAlreadyRunning, update_all_orgs_billing_quotas

    try:
        summary = update_all_orgs_billing_quotas()
    except RecomputeAlreadyRunning:
        logger.warning("quota recomputation skipped: the previous run is still going")
        return {}
    if summary.failed:
        logger.error("quota recomputation failed for %d organization(s): %s", summary.failed, summary.failures)
    return dict(summary.as_rows())
