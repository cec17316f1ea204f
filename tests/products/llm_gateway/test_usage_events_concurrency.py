"""The same batch sent by several clients at once is stored once (PostgreSQL only: it needs real concurrent connections)."""
from __future__ import annotations

import pytest

from products.billing.models import UsageEvent

from .test_usage_events_api import event, post


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_sent_concurrently_is_stored_once(accounts):
    import threading

    from django.db import connection as thread_connection

    org = accounts.organization()
    project = accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=["llm_gateway:write"])
    batch = [event(cost=1) for _ in range(50)]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def send():
        try:
            barrier.wait()
            statuses.append(post(project.id, {"batch": batch}, value).status_code)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200, 200, 200]
    assert UsageEvent.objects.filter(project=project).count() == 50
