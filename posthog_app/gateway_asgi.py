"""How the gateway's `/llm/` calls are served over ASGI: the views, without Django's request machinery.

Timed phase by phase (bench/llm_gateway.py's load, 2 CPUs), a call spent about 2 ms of
the event loop outside the gateway's own work under Django's ASGI handler (trimmed of its
middleware and per-request thread already): building an `ASGIRequest` (META from every
header, a spooled body file), the handler chain, sending the response in 64 KB pieces
through `send_response`, and the tasks and signals around it. On one event loop serving
every caller, that time is waited for by every call in flight, so it showed in the added
p99 more than anywhere else.

The gateway's views need little of it: the method, the path, the headers (lower-case
names), the body and, for logging, the scope. `GatewayRequest` is exactly that, built
straight from the scope; the views answer with Django responses as before, which this
handler sends itself. What is kept from Django's handler:
- a client that disconnects while its view runs cancels the view (the gateway meters the
  call as disconnected, with the usage seen so far), and no task's exception is raised in
  this frame (see `_run`: a traceback here tied the whole request into a reference cycle);
- an unresolvable path or an unexpected error gets Django's own answer and log line
  (`response_for_exception`: the 404 page, or the 500 page and `django.request`'s log);
- `response.close()`, so the response's closers and `request_finished` run as in Django.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.handlers.exception import response_for_exception
from django.http import HttpResponse, HttpResponseBase
from django.urls import get_resolver

logger = logging.getLogger("django.request")

# Read no more than this of a body (the views refuse anything over 32 MB with a clear error).
MAX_BODY_BYTES = 32 * 1024 * 1024 + 1


class GatewayRequest:
    """The parts of a request the gateway's views read; duck-types the `HttpRequest` they were written for."""

    __slots__ = ("scope", "method", "path", "path_info", "headers", "body", "_pos", "resolver_match")

    def __init__(self, scope: dict[str, Any], body: bytes) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope.get("root_path", "") + scope["path"]
        self.path_info: str = scope["path"]
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value  # as Django joins repeats
        self.headers = headers
        self.body = body
        self._pos = 0
        self.resolver_match = None

    def read(self, size: int = -1) -> bytes:
        end = len(self.body) if size is None or size < 0 else self._pos + size
        chunk = self.body[self._pos : end]
        self._pos += len(chunk)
        return chunk


class GatewayASGIHandler:
    """The ASGI application for `/llm/` paths (see the module docstring for why it is not Django's)."""

    def __init__(self, urlconf: str) -> None:
        self.urlconf = urlconf

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"The gateway serves HTTP only, not {scope['type']}.")
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before its request was whole
        request = GatewayRequest(scope, body)
        view = asyncio.create_task(self._respond(request, send))
        listener = asyncio.create_task(_until_disconnect(receive))
        await _run(view, listener)

    async def _respond(self, request: GatewayRequest, send) -> None:
        try:
            match = get_resolver(self.urlconf).resolve(request.path_info)
            request.resolver_match = match
            response = await match.func(request, *match.args, **match.kwargs)
        except Exception as exc:  # noqa: BLE001 - answered and logged as Django does (404 page, 500 page)
            response = _error_response(request, exc)
        try:  # (a view cancelled by a disconnect has no response to send or close)
            await _send_response(response, send)
        finally:
            response.close()


async def _run(view: asyncio.Task, listener: asyncio.Task) -> None:
    """Wait for the view; cancel it if the client disconnects first. Raise only what the view raised."""
    _, pending = await asyncio.wait((view, listener), return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    # Read the outcomes with `exception()`: awaiting (raising) a task's exception here would
    # put this frame in its traceback, and the traceback would hold both tasks and the request.
    failure = None if view.cancelled() else view.exception()
    del view, listener
    if failure is not None:
        raise failure


async def _read_body(receive) -> bytes | None:
    """The request's body (at most `MAX_BODY_BYTES` of it), or None if the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if size < MAX_BODY_BYTES:
            chunks.append(chunk[: MAX_BODY_BYTES - size])
            size += len(chunks[-1])
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _until_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_response(response: HttpResponseBase, send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").strip().encode("ascii")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if response.streaming:
        async for chunk in response.streaming_content:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await send({"type": "http.response.body", "body": response.content, "more_body": False})


def _error_response(request: GatewayRequest, exc: Exception) -> HttpResponseBase:
    try:
        return response_for_exception(request, exc)  # logs to django.request, as under Django's handler
    except Exception:  # noqa: BLE001 - e.g. DEBUG's technical page wants a full HttpRequest
        logger.exception("Internal Server Error: %s", request.path, exc_info=exc)
        return HttpResponse("<h1>Server Error (500)</h1>", status=500, content_type="text/html")
