"""A call through the gateway leaves no reference cycle behind: its request is freed when it ends.

Under load, requests caught in cycles were most of what the garbage collector found, and a
full collection pauses the event loop with every call in flight waiting (measured: up to 27 ms).
"""
from __future__ import annotations

import gc

from django.core.handlers.asgi import ASGIRequest

from tests.products.llm_gateway.gateway_support import (
    chat,
    member,  # noqa: F401 (fixture)
)


def test_calls_leave_no_request_in_a_reference_cycle(gateway_server, fake_upstream, member):
    assert chat(gateway_server, "posthog_code", member.key).status_code == 200  # warm: lazy imports and pools
    gateway_server.wait_for_usage()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept in gc.garbage, to look at
    try:
        for _ in range(5):
            assert chat(gateway_server, "posthog_code", member.key).status_code == 200
        gateway_server.wait_for_usage()
        gc.collect()
        requests_in_cycles = [o for o in gc.garbage if isinstance(o, ASGIRequest)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert requests_in_cycles == []
