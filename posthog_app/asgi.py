"""ASGI entry point: the LLM gateway's server (uvicorn), and any server that prefers ASGI.

`make run`'s `gateway` process and docker-compose's `gateway` service serve this with
uvicorn (`--lifespan off`: Django does not speak the lifespan protocol). Paths under
`/llm/` (the gateway's async views) go through `GatewayASGIHandler`; every other path
(`/healthz` for the health check, the admin...) gets Django's own handler and full
middleware stack, as under WSGI.
"""
import asyncio
import gc
import os

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import get_resolver, set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")

GATEWAY_PATH_PREFIX = "/llm/"
GATEWAY_URLCONF = "posthog_app.gateway_urls"


class GatewayASGIHandler(ASGIHandler):
    """Django's ASGI handler, trimmed to what an API called with a key needs.

    Measured under load (bench/llm_gateway.py, 2 CPUs), Django's own handler spent more
    of the event loop's time than the proxying itself, on three things the gateway does
    not need:
    - the middleware stack (sessions, CSRF, messages, clickjacking headers): each sync
      middleware costs two thread hops per request;
    - a thread per request (`ThreadSensitiveContext`) for the request's sync code;
    - `request_started` sent through that thread: its receivers reset the query log and
      close the request thread's database connections, and the gateway's views open none
      there (their database work runs in their own pools, products/llm_gateway/db.py).
    `request_finished` is still sent, by `response.close()` as Django does; its receivers
    (close_old_connections, close_caches, reset_urlconf) find nothing to do on the loop.
    The rest (`handle`'s disconnect handling) is Django 5.2's. Paths resolve against the
    gateway's own URLs (`GATEWAY_URLCONF`), not the whole site's.
    """

    def resolve_request(self, request):
        resolver_match = get_resolver(GATEWAY_URLCONF).resolve(request.path_info)
        request.resolver_match = resolver_match
        return resolver_match

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        from django.core.exceptions import RequestAborted

        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away during send_response
            return response

        # As Django: watch for a disconnect while the view runs, and cancel the view if it comes.
        # Unlike Django, no exception of the two tasks is raised here (they are read with
        # `exception()`, and the cancelled one awaited through `asyncio.wait`): a traceback
        # through this frame would tie the frame, both tasks and the whole request into a
        # reference cycle, which only the garbage collector frees. Measured under load, that
        # was most of what it collected, in pauses of up to 27 ms with every call waiting.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        failure = next(
            (exc for exc in (t.exception() for t in tasks if not t.cancelled()) if exc is not None and not isinstance(exc, RequestAborted)),
            None,
        )
        processor = tasks[1]
        del tasks
        if failure is not None:  # as Django: anything but a client gone away propagates
            body_file.close()
            raise failure
        if not processor.cancelled():
            processor.result().close()
        body_file.close()


django_application = get_asgi_application()  # sets Django up first
gateway_application = GatewayASGIHandler()

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: move it
# out of the collector's generations, so a full collection walks only what requests allocated
# instead of pausing the event loop (every call in flight) to walk the whole heap.
gc.freeze()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope.get("path", "").startswith(GATEWAY_PATH_PREFIX):
        return await gateway_application(scope, receive, send)
    return await django_application(scope, receive, send)
