"""The model providers upstream: where each is, our key for it, and one pooled client per event loop.

Base URL and key per provider come from settings (`LLM_OPENAI_*`, `LLM_ANTHROPIC_*`), read
at each call so an operator's (or a test's) change applies without a restart. Our
provider key replaces the caller's credential; hop-by-hop headers, credentials and the
gateway's own headers are never forwarded. One aiohttp session per event loop (one per
process under uvicorn) keeps connections to the providers alive across calls; `send` is
the one way a call reaches a provider (or the in-process demo model).
"""
from __future__ import annotations

import asyncio
import importlib.util
import sys
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from django.conf import settings

from .demo_model import DEMO_BASE_URL, demo_transport, is_demo_model
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


class UpstreamError(Exception):
    """The provider could not be reached, or its answer could not be read to the end."""


class UpstreamResponse:
    """A provider's answer, whichever client fetched it: status, headers, then the body whole or in chunks."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive

    async def read(self) -> bytes:
        raise NotImplementedError

    def iter_chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class _AiohttpResponse(UpstreamResponse):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamError(_describe(exc)) from exc
        finally:
            self._response.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamError(_describe(exc)) from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection goes back to the pool
        else:
            self._response.close()  # a stream cut short: the connection is not reused


class _HttpxResponse(UpstreamResponse):
    """The demo model's answers (served in process through an httpx transport)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise UpstreamError(_describe(exc)) from exc
        finally:
            await self._response.aclose()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamError(_describe(exc)) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Clients:
    """One event loop's clients: aiohttp for the providers, httpx for the in-process demo model.

    aiohttp, not httpx, for the providers: measured under load (bench/llm_gateway.py), the
    httpx stack (httpx, httpcore, anyio, h11) was the biggest single cost of a call in the
    gateway's event loop (a pool lookup with a system call per idle connection, and several
    layers per read); aiohttp parses HTTP in C and takes a connection from its pool in O(1).
    """

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS, sock_read=READ_SECONDS),
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )
        self.demo = httpx.AsyncClient(transport=demo_transport(), timeout=TIMEOUT, trust_env=False)

    @property
    def closed(self) -> bool:
        return self.session.closed or self.demo.is_closed


MAX_CONNECTIONS = 1000  # per process; each is one call in flight (or idle, kept alive)
KEEPALIVE_SECONDS = 60.0
CONNECT_SECONDS = 10.0
READ_SECONDS = 600.0  # between two reads: a model may think for minutes before its first token

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Clients]" = weakref.WeakKeyDictionary()


def _loop_clients() -> _Clients:
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None or clients.closed:
        clients = _clients[loop] = _Clients()
    return clients


async def send(url: str, body: bytes, headers: dict[str, str], *, stream: bool) -> UpstreamResponse:
    """POST `body` to `url`; return once the status and headers have arrived (read the body from the answer).

    Raises `UpstreamError` when the provider cannot be reached or answers nothing.
    """
    clients = _loop_clients()
    if url.startswith(DEMO_BASE_URL):
        request = clients.demo.build_request("POST", url, content=body, headers=headers)
        try:
            return _HttpxResponse(await clients.demo.send(request, stream=stream))
        except httpx.HTTPError as exc:
            raise UpstreamError(_describe(exc)) from exc
    try:
        response = await clients.session.post(url, data=body, headers=headers, allow_redirects=False)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise UpstreamError(_describe(exc)) from exc
    return _AiohttpResponse(response)
