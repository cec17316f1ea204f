"""The model providers upstream: where each is, our key for it, and one pooled client per event loop.

Base URL and key per provider come from settings (`LLM_OPENAI_*`, `LLM_ANTHROPIC_*`), read
at each call so an operator's (or a test's) change applies without a restart. Our
provider key replaces the caller's credential; hop-by-hop headers, credentials and the
gateway's own headers are never forwarded. One pool of `httpx.AsyncClient`s per event
loop (one per process under uvicorn) keeps connections to the providers alive across calls.
"""
from __future__ import annotations

import asyncio
import importlib.util
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from django.conf import settings

from .demo_model import DEMO_BASE_URL, DEMO_PROVIDER_HOST, demo_transport, is_demo_model
from .errors import ProviderNotConfigured

ANTHROPIC_VERSION = "2023-06-01"

# Never forwarded: hop-by-hop headers (RFC 9110 7.6.1), anything that carries a credential,
# headers the client library sets for its own connection, and the gateway's own headers.
DROPPED_HEADERS = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
        "authorization", "x-api-key", "cookie", "api-key", "openai-organization", "openai-project",
        "x-project-id", "x-trace-id", "x-posthog-properties", "forwarded", "x-forwarded-for",
        "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "content-type",
    }
)

# httpcore asks `import sniffio` every time it sets up a lock (several times per request);
# without the package installed, each failed import searches sys.path on disk again, which
# cost more than the rest of the gateway's work. A None entry makes the answer (asyncio) instant.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0)
LIMITS = httpx.Limits(max_connections=250, max_keepalive_connections=32, keepalive_expiry=60.0)  # per shard


@dataclass(frozen=True)
class Upstream:
    """One provider as configured now."""

    provider: str  # "openai" or "anthropic"
    base_url: str
    api_key: str

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def headers(self, incoming: Mapping[str, str]) -> dict[str, str]:
        """The headers to send: the caller's, minus the dropped ones, plus our credential."""
        hop = {h.strip().lower() for h in (incoming.get("connection") or "").split(",") if h.strip()}
        out = {
            name: value
            for name, value in incoming.items()
            if name not in DROPPED_HEADERS and name not in hop and not name.startswith("x-posthog-")
        }
        out["content-type"] = "application/json"
        if self.provider == "anthropic":
            out["x-api-key"] = self.api_key
            out.setdefault("anthropic-version", ANTHROPIC_VERSION)
        else:
            out["authorization"] = f"Bearer {self.api_key}"
        return out


def upstream_for(provider: str, model: str = "") -> Upstream:
    """Return the provider's configuration; raise `ProviderNotConfigured` when it has no key.

    The demo model (`posthog-demo`) needs no key: it is served in process (demo_model.py)
    through the transport every client mounts for `DEMO_BASE_URL`, in either API shape.
    """
    if is_demo_model(model) and provider in ("openai", "anthropic"):
        return Upstream(provider=provider, base_url=DEMO_BASE_URL, api_key="demo")
    if provider == "anthropic":
        base_url, api_key = settings.LLM_ANTHROPIC_BASE_URL, settings.LLM_ANTHROPIC_API_KEY
    elif provider == "openai":
        base_url, api_key = settings.LLM_OPENAI_BASE_URL, settings.LLM_OPENAI_API_KEY
    else:
        raise ProviderNotConfigured(f"Unknown provider {provider!r}.")
    if not api_key:
        name = provider.upper()
        raise ProviderNotConfigured(
            f"The {provider} provider is not configured on this gateway (LLM_{name}_API_KEY is unset)."
        )
    return Upstream(provider=provider, base_url=str(base_url).rstrip("/"), api_key=api_key)


POOL_SHARDS = 8


class _ClientPool:
    """`POOL_SHARDS` clients used in turn: one pool of connections, split so each lookup stays short.

    httpcore looks through every connection of a client's pool (with a system call for each
    idle one) to place each request, so one client holding N connections costs O(N) per
    request: at 32 concurrent calls that was most of the gateway's CPU time. The same
    connections spread over 8 clients cost an eighth of it; keep-alive works as before.
    """

    def __init__(self) -> None:
        self.clients = [
            httpx.AsyncClient(
                timeout=TIMEOUT, limits=LIMITS, follow_redirects=False, trust_env=False,
                mounts={f"all://{DEMO_PROVIDER_HOST}": demo_transport()},  # the demo model, never the network
            )
            for _ in range(POOL_SHARDS)
        ]
        self.turn = 0

    def next(self) -> httpx.AsyncClient:
        self.turn = (self.turn + 1) % len(self.clients)
        return self.clients[self.turn]


_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ClientPool]" = weakref.WeakKeyDictionary()


def get_client() -> httpx.AsyncClient:
    """A client of the running event loop's pool (created on first use)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or any(c.is_closed for c in pool.clients):
        pool = _pools[loop] = _ClientPool()
    return pool.next()
