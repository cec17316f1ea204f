"""Heartbeating for synchronous activities, shared by every workflow package's activities.

A sync activity blocks its thread on the database, Slack or a model call, so a helper
thread heartbeats for it: a worker killed mid-step is noticed after the workflow's
heartbeat timeout (seconds), not the step's start-to-close timeout (minutes), and the
step is retried elsewhere.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

HEARTBEAT_EVERY_SECONDS = 1.0


@contextmanager
def heartbeating() -> Iterator[None]:
    """Heartbeat from a helper thread while the body runs (outside an activity, or in a local one: do nothing).

    A local activity runs inside its workflow's task on the same worker: it has no heartbeat
    (a killed worker's workflow task times out and the next worker runs the step again).
    """
    if not activity.in_activity() or activity.info().is_local:
        yield
        return
    stop = threading.Event()
    context = contextvars.copy_context()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_EVERY_SECONDS):
            try:
                context.run(activity.heartbeat)
            except Exception:  # noqa: BLE001 - the activity is finishing
                return

    thread = threading.Thread(target=beat, name="activity-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
