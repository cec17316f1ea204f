"""Where the gateway's database work runs: two small thread pools of its own, with kept connections.

Under ASGI, Django runs each request's thread-sensitive sync code in a thread of that
request, so a connection opened there is either closed at the end of the request (a new
connection for every call) or leaked. The gateway's views instead send their database
work here: `run_auth` (credential and project lookups, on the path of every call) and
`run_usage` (recording, after the answer). Each pool's threads live as long as the
process and keep their connection between calls, tidied like Django does around a
request (`close_old_connections`: closed when broken or older than CONN_MAX_AGE). Two
pools, so recording under load never queues in front of the next caller's lookup.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

T = TypeVar("T")

AUTH_THREADS = 8
USAGE_THREADS = 4

_auth_pool = ThreadPoolExecutor(max_workers=AUTH_THREADS, thread_name_prefix="llm-gateway-auth")
_usage_pool = ThreadPoolExecutor(max_workers=USAGE_THREADS, thread_name_prefix="llm-gateway-usage")


def _tidy(func: Callable[..., T]) -> Callable[..., T]:
    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return run


async def run_auth(func: Callable[..., T], *args: Any) -> T:
    """Run `func(*args)` (database reads on the request path) in the auth pool."""
    return await sync_to_async(_tidy(func), thread_sensitive=False, executor=_auth_pool)(*args)


async def run_usage(func: Callable[..., T], *args: Any) -> T:
    """Run `func(*args)` (recording usage, off the request path) in the usage pool."""
    return await sync_to_async(_tidy(func), thread_sensitive=False, executor=_usage_pool)(*args)
