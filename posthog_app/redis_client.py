"""The process-wide Redis connection pool.

Every component shares one pool per process (built lazily from `REDIS_URL`), so a
quota check reuses a warm connection instead of paying a TCP handshake.
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

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


class OneRoundTrip:
    """A few reads queued like a pipeline's, sent in one write on the calling thread's own connection, replies in order.

    For the Slack webhook's one Redis read per mention (the workspaces' generation and the
    quota score). redis-py's `Pipeline` around the same two commands (its connection
    pool's lock and unread-data poll, metrics counters, retry wrapper, command stack and
    reset) cost more of the web process's CPU than anything else of ours per request
    (py-spy); this sends the same bytes. It supports what that read queues (`get`,
    `zscore`, with the same replies: bytes and float) and raises what a pipeline raises:
    redis.ConnectionError / TimeoutError, or the first redis.ResponseError once every
    reply is read.

    The connection is the thread's own (one per thread and `get_client` pool, made with
    that pool's settings, so `timeout` means what it means there): no lock is taken, and a
    connection that failed is dropped, so no reply is ever left unread on it. A connection
    Redis closed since its last use (a restart) is made again once, as the pool would.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self._pool = get_client(timeout).connection_pool
        self._commands: list[tuple[Any, ...]] = []
        self._floats: list[bool] = []

    def get(self, key: str) -> "OneRoundTrip":
        self._commands.append(("GET", key))
        self._floats.append(False)
        return self

    def zscore(self, key: str, member: str) -> "OneRoundTrip":
        self._commands.append(("ZSCORE", key, member))
        self._floats.append(True)
        return self

    def execute(self) -> list[Any]:
        if not self._commands:
            return []
        own = _thread_connection(self._pool)
        try:
            replies = self._send(own)
        except redis.ConnectionError:
            if not own.used:
                raise
            own.used = False  # a connection closed under us: once more on a new one
            replies = self._send(own)
        own.used = True
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return [float(r) if as_float and r is not None else r for r, as_float in zip(replies, self._floats)]

    def _send(self, own: "_ThreadConnection") -> list[Any]:
        connection = own.connection
        try:
            connection.send_packed_command(connection.pack_commands(self._commands))
            replies: list[Any] = []
            for _ in self._commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # read the rest too: nothing is left for the next round trip
                    replies.append(exc)
            return replies
        except BaseException:
            connection.disconnect()
            raise


class _ThreadConnection:
    __slots__ = ("connection", "used", "__weakref__")

    def __init__(self, connection: redis.connection.AbstractConnection) -> None:
        self.connection = connection
        self.used = False  # True once a round trip went through on it


_thread_local = threading.local()


def _thread_connection(pool: redis.ConnectionPool) -> _ThreadConnection:
    connections: "weakref.WeakKeyDictionary[redis.ConnectionPool, _ThreadConnection] | None" = getattr(
        _thread_local, "connections", None
    )
    if connections is None:
        connections = _thread_local.connections = weakref.WeakKeyDictionary()
    own = connections.get(pool)
    if own is None:
        own = connections[pool] = _ThreadConnection(pool.connection_class(**pool.connection_kwargs))
    return own
