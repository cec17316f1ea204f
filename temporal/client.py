"""The one module through which the web process talks to Temporal.

Django views are synchronous and the Temporal SDK is asyncio, so each process keeps
one event loop on a daemon thread and one connected `Client` on it; views submit
coroutines to that loop and wait for the result. The connection is reused across
requests (a workflow start costs one gRPC call, not a handshake).
"""
from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from collections.abc import Coroutine
from typing import Any, TypeVar

from django.conf import settings
from temporalio.client import Client

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_clients: dict[tuple[str, str], Client] = {}


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_loop.run_forever, name="temporal-client-loop", daemon=True)
            thread.start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run `coro` on the shared loop and wait up to `timeout` seconds for its result."""
    future = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


async def get_client() -> Client:
    """Return the connected client for the configured address and namespace (on the shared loop)."""
    key = (settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE)
    client = _clients.get(key)
    if client is None:
        client = await asyncio.wait_for(Client.connect(key[0], namespace=key[1]), timeout=5)
        _clients[key] = client
    return client


def check_temporal_health(timeout: float = 3.0) -> None:
    """Raise if the Temporal frontend does not answer a health check."""

    async def check() -> None:
        client = await get_client()
        ok = await client.service_client.check_health(timeout=timedelta(seconds=timeout))
        if not ok:
            raise RuntimeError("Temporal health check failed")

    run_sync(check(), timeout=timeout + 5)
