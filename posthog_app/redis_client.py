"""The process-wide Redis connection pool.

Every component shares one pool per process (built lazily from `REDIS_URL`), so a
quota check reuses a warm connection instead of paying a TCP handshake.
"""
from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_url: str | None = None


def get_client() -> redis.Redis:
    """Return the shared client for `settings.REDIS_URL` (rebuilt if the setting changes)."""
    global _client, _client_url
    url = settings.REDIS_URL
    if _client is None or _client_url != url:
        with _lock:
            if _client is None or _client_url != url:
                _client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=2,
                    socket_timeout=2,
                    health_check_interval=30,
                )
                _client_url = url
    return _client
