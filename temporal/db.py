"""Django database connections on Temporal's activity threads.

Synchronous activities run on a thread pool that lives as long as the worker, so each
thread keeps its own persistent connection (CONN_MAX_AGE), like a request thread does.
Activities call `activity_started()` / `activity_finished()` around their body (Django's
request-start/finish housekeeping); when a worker stops, `close_connections_of_stopped_threads()`
closes what its joined threads left open, so no idle sessions outlive the worker.
"""
from __future__ import annotations

import threading

from django.db import close_old_connections, connections

_lock = threading.Lock()
_by_thread: dict[threading.Thread, set] = {}


def activity_started() -> None:
    close_old_connections()


def activity_finished() -> None:
    close_old_connections()
    opened = set(connections.all(initialized_only=True))
    if opened:
        with _lock:
            _by_thread.setdefault(threading.current_thread(), set()).update(opened)


def release_connections() -> None:
    """Close this thread's connections now (an activity about to wait long on something else)."""
    for conn in connections.all(initialized_only=True):
        conn.close()


def close_connections_of_stopped_threads() -> None:
    """Close the connections left by activity threads that have exited."""
    with _lock:
        stopped = [t for t in _by_thread if not t.is_alive()]
        leftovers = [conn for t in stopped for conn in _by_thread.pop(t)]
    for conn in leftovers:
        conn.inc_thread_sharing()  # the owning thread is gone; closing from here is safe
        try:
            conn.close()
        finally:
            conn.dec_thread_sharing()
