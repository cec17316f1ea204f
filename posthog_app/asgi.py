"""ASGI entry point: the LLM gateway's server (uvicorn), and any server that prefers ASGI.

`make run`'s `gateway` process and docker-compose's `gateway` service serve this with
uvicorn (`--lifespan off`: Django does not speak the lifespan protocol). Paths under
`/llm/` (the gateway's async views) go through `GatewayASGIHandler`; every other path
(`/healthz` for the health check, the admin...) gets Django's own handler and full
middleware stack, as under WSGI.
"""
import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")

from posthog_app.gateway_asgi import GatewayASGIHandler  # noqa: E402 - after the settings module is named

GATEWAY_PATH_PREFIX = "/llm/"
GATEWAY_URLCONF = "posthog_app.gateway_urls"


django_application = get_asgi_application()  # sets Django up first
gateway_application = GatewayASGIHandler(GATEWAY_URLCONF)

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: move it
# out of the collector's generations, so a full collection walks only what requests allocated
# instead of pausing the event loop (every call in flight) to walk the whole heap.
gc.freeze()
# Calls make few objects that outlive them and almost no reference cycles (see
# tests/products/llm_gateway/test_gateway_garbage.py), yet at the default threshold (700)
# the youngest generation was collected every ~20 calls, each time walking the objects of
# every call in flight (1-2 ms, and a 2-7 ms middle-generation walk every tenth time):
# 240 ms of pauses per 3,000 calls, every call in flight waiting. At 10,000 the collector
# runs about once per 3,000 calls; the few cycles there are still get collected.
gc.set_threshold(10_000, 10, 10)
# The event loop shares the GIL with the gateway's database threads (db.py: credential lookups,
# usage recording). A thread holding the GIL keeps it until the switch interval passes (5 ms by
# default), and every call in flight waits that long for the loop. 1 ms bounds that wait; in an
# interleaved A/B on one host (3 rounds of 1,500 model-paced calls at concurrency 32, same
# session) the streamed calls' added time to first token went from p99 7.8-9.3 to 5.8-6.8 ms,
# the non-streamed calls' stayed at 6.4-9.7 ms either way.
sys.setswitchinterval(0.001)


async def application(scope, receive, send):
    if scope["type"] == "http" and scope.get("path", "").startswith(GATEWAY_PATH_PREFIX):
        return await gateway_application(scope, receive, send)
    return await django_application(scope, receive, send)
