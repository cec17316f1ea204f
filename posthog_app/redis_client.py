"""The process-wide Redis connection pool.

Every component shares one pool per process (built lazily from `REDIS_URL`), so a
quota check reuses a warm connection instead of paying a TCP handshake.
"""
from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio
from django.conf import settings

DEFAULT_TIMEOUT_SECONDS = 2.0

_lock = threading.Lock()
_clients: dict[tuple[str, float], redis.Redis] = {}


def get_client(timeout: float | None = None) -> redis.Redis:
    """Return the shared client for `settings.REDIS_URL` (rebuilt if the setting changes).

    `timeout` bounds connecting and each reply, in seconds (default 2). A caller with a
    deadline of its own (the Slack webhook has Slack's 3 seconds) asks for a shorter one
    and gets a pool of its own, so its short timeout never cuts off slower callers.
    """
    key = (settings.REDIS_URL, DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(
                    key[0],
                    socket_connect_timeout=key[1],
                    socket_timeout=key[1],
                    health_check_interval=30,
                )
                _clients[key] = client
    return client


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float], redis.asyncio.Redis]]" = (
    weakref.WeakKeyDictionary()
)


def get_async_client(timeout: float | None = None) -> redis.asyncio.Redis:
    """Return the running event loop's client for `settings.REDIS_URL` (asyncio; same options as `get_client`).

    For code on an event loop (the LLM gateway): its commands run on the loop itself, with
    no hop to a worker thread, which under load cost more than the Redis round trip (each
    hop waits for the GIL behind whatever the process's other threads are doing). An
    asyncio connection belongs to the loop it was opened on, hence one pool per loop.
    """
    loop = asyncio.get_running_loop()
    key = (settings.REDIS_URL, DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout))
    clients = _async_clients.get(loop)
    if clients is None:
        clients = _async_clients[loop] = {}
    client = clients.get(key)
    if client is None:
        client = clients[key] = redis.asyncio.Redis.from_url(
            key[0],
            socket_connect_timeout=key[1],
            socket_timeout=key[1],
            health_check_interval=30,
        )
    return client
