"""One model call through the gateway: check, throttle, forward, relay, meter.

`handle_call` is the whole flow behind both endpoints; the views only pick the API:
1. the product from the path (registry; aliases resolve, unknown is a 404);
2. the caller and its project (credentials.py; at most one database hop for both, none when cached);
3. the body: a JSON object naming a model the product allows;
4. the provider (configured, else 503) and the throttles (`check_throttles`, a 429 on denial);
5. the upstream call, plain or streamed (SSE relayed event by event);
6. metering (metering.py), scheduled after the answer has gone, success or failure.
Every refusal is a typed `GatewayError` rendered in the caller's API shape (errors.py).
"""
from __future__ import annotations

import asyncio
import json
import re
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from posthog_app.json_input import InvalidJSON, parse_json

from .credentials import Caller, authenticate
from .demo_model import DEMO_MODEL
from .errors import ApiShape, BadRequest, GatewayError, NotFound, RateLimited, UpstreamUnreachable, render
from .metering import CallMeter
from .pricing import known_models
from .products import ProductConfig, UnknownProduct, known_product_names, resolve_product
from .streaming import SSERelay, note_body_usage, stream_error_event
from .throttles import ThrottleContext, check_throttles
from .upstream import UpstreamError, UpstreamResponse, send, upstream_for

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_BODY_DEPTH = 128  # tool schemas nest deeper than usage events do
TRACE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
PROPERTIES_HEADER = "x-posthog-properties"
PROPERTIES_FIELD = "posthog_properties"  # taken out of the body before it goes upstream


@dataclass(frozen=True)
class Api:
    """One of the provider APIs the gateway speaks."""

    shape: ApiShape
    provider: str
    path: str


OPENAI_CHAT = Api(shape="openai", provider="openai", path="/v1/chat/completions")
ANTHROPIC_MESSAGES = Api(shape="anthropic", provider="anthropic", path="/v1/messages")


def lower_headers(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def trace_id_of(headers: dict[str, str]) -> str:
    sent = (headers.get("x-trace-id") or "").strip()
    return sent if TRACE_ID.match(sent) else uuid.uuid4().hex


def product_of(name: str) -> ProductConfig:
    try:
        return resolve_product(name)
    except UnknownProduct:
        raise NotFound(
            f"Unknown product {name!r}; known products: {', '.join(known_product_names())}.", code="unknown_product"
        ) from None


async def handle_call(request: HttpRequest, product_name: str, api: Api) -> HttpResponse:
    """Serve one chat completion (OpenAI) or message (Anthropic) call.

    Every refusal is an answer in the caller's shape; only a cancellation (the client went
    away) propagates, after the call has been handed to metering.
    """
    headers = lower_headers(request)
    trace_id = trace_id_of(headers)
    try:
        product = product_of(product_name)
        caller = await authenticate(headers, product)
        body = _parse_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("The body must name a model (`model`).", code="model_required")
        if not product.allows_model(model):
            raise BadRequest(
                f"Model {model!r} is not allowed for product {product.name}; allowed: "
                f"{', '.join(product.allowed_models or ())}.",
                code="model_not_allowed",
            )
        upstream = upstream_for(api.provider, model)
        caller_properties = _caller_properties(headers, body)
        ctx = _throttle_context(product, caller, model, body, api)
        denial = await check_throttles(ctx)
        if denial is not None:
            raise RateLimited(denial.message, code=denial.scope, headers={"Retry-After": str(max(1, int(denial.retry_after)))})
    except GatewayError as error:
        return render(error, api.shape, trace_id)
    meter = CallMeter(
        product=product,
        project=caller.project,
        provider=api.provider,
        model=model,
        trace_id=trace_id,
        stream=body.get("stream") is True,
        credential_kind=caller.kind,
        throttle_ctx=ctx,
        caller_properties=caller_properties,
        run_id=caller.run_id,
        end_user=ctx.end_user,
    )
    forwarded = upstream.headers(headers)
    url = upstream.url(api.path)
    try:
        if meter.stream:
            return await _stream(api, meter, url, forwarded, body)
        return await _plain(api, meter, url, forwarded, body)
    except BaseException as exc:
        # The client went away before the answer (Django cancels the view), or something broke:
        # the call still reached the provider, so it is recorded, as an error, with what was seen.
        if isinstance(exc, asyncio.CancelledError):
            meter.client_disconnected = True
            meter.fail("The client went away before the upstream answered.")
        else:
            meter.fail(f"The gateway failed: {type(exc).__name__}")
        meter.finish()
        raise


def _parse_body(request: HttpRequest) -> dict[str, Any]:
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.", code="body_too_large")
    try:
        body = parse_json(raw, max_depth=MAX_BODY_DEPTH)
    except InvalidJSON as exc:
        raise BadRequest(f"The body must be a JSON object: {exc.reason}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    return body


def _caller_properties(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Extra event properties the caller sends (header `X-PostHog-Properties`, body `posthog_properties`).

    They are stored with the event, except those the gateway owns (`$ai_product`,
    `$ai_billable`, tokens, cost..., see `metering.OWNED_PROPERTIES`), which it sets last.
    """
    properties: dict[str, Any] = {}
    sent = body.pop(PROPERTIES_FIELD, None)
    raw_header = headers.get(PROPERTIES_HEADER)
    try:
        from_header = json.loads(raw_header) if raw_header else None
    except ValueError:
        raise BadRequest(f"{PROPERTIES_HEADER} must be a JSON object.", code="invalid_properties") from None
    for source in (from_header, sent):
        if isinstance(source, dict):
            properties.update({str(k)[:200]: v for k, v in source.items()})
    try:
        json.dumps(properties, allow_nan=False)
    except (TypeError, ValueError):
        raise BadRequest("Usage properties must be plain JSON.", code="invalid_properties") from None
    return properties


def _throttle_context(product: ProductConfig, caller: Caller, model: str, body: dict[str, Any], api: Api) -> ThrottleContext:
    if api.shape == "anthropic":
        metadata = body.get("metadata")
        end_user = metadata.get("user_id") if isinstance(metadata, dict) else None
    else:
        end_user = body.get("user")
    return ThrottleContext(
        product=product.name,
        billable=product.billable,
        project_id=caller.project.pk,
        project_api_token=caller.project.api_token,
        organization_id=caller.project.organization_id,
        credential=caller.credential,
        credential_kind=caller.kind,
        user_id=caller.user_id,
        end_user=end_user if isinstance(end_user, str) else "",
        model=model,
        extra={"credential_header": caller.header, **({"run_id": caller.run_id} if caller.run_id is not None else {})},
    )


def _answer(status: int, content: bytes, upstream_response: UpstreamResponse, trace_id: str) -> HttpResponse:
    response = HttpResponse(
        content, status=status, content_type=upstream_response.headers.get("content-type", "application/json")
    )
    for name in ("request-id", "x-request-id"):
        if name in upstream_response.headers:
            response[name] = upstream_response.headers[name]
    response["X-Trace-Id"] = trace_id
    return response


async def _plain(api: Api, meter: CallMeter, url: str, headers: dict[str, str], body: dict[str, Any]) -> HttpResponse:
    try:
        upstream_response = await send(url, json.dumps(body).encode(), headers, stream=False)
        content = await upstream_response.read()
    except UpstreamError as exc:
        meter.fail(f"The {api.provider} upstream could not be reached: {exc}", 502)
        meter.finish()
        return render(UpstreamUnreachable(f"The {api.provider} upstream could not be reached."), api.shape, meter.trace_id)
    meter.first_token()  # a whole answer: its first token arrives with it
    meter.http_status = upstream_response.status_code
    if upstream_response.status_code >= 400:
        meter.fail(content.decode("utf-8", "replace"), upstream_response.status_code)
    else:
        note_body_usage(api.shape, meter, content)
    meter.finish()
    return _answer(upstream_response.status_code, content, upstream_response, meter.trace_id)


async def _stream(api: Api, meter: CallMeter, url: str, headers: dict[str, str], body: dict[str, Any]) -> HttpResponse:
    drop_usage_chunk = False
    if api.shape == "openai":
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        if not options.get("include_usage"):
            body["stream_options"] = {**options, "include_usage": True}  # so the last chunk carries usage
            drop_usage_chunk = True  # ... which this client did not ask to see
    try:
        upstream_response = await send(url, json.dumps(body).encode(), headers, stream=True)
    except UpstreamError as exc:
        meter.fail(f"The {api.provider} upstream could not be reached: {exc}", 502)
        meter.finish()
        return render(UpstreamUnreachable(f"The {api.provider} upstream could not be reached."), api.shape, meter.trace_id)
    meter.http_status = upstream_response.status_code
    if upstream_response.status_code >= 400 or "text/event-stream" not in upstream_response.headers.get("content-type", ""):
        try:
            content = await upstream_response.read()
        except UpstreamError as exc:
            content = str(exc).encode()
        if upstream_response.status_code >= 400:
            meter.fail(content.decode("utf-8", "replace"), upstream_response.status_code)
        else:
            note_body_usage(api.shape, meter, content)
        meter.finish()
        return _answer(upstream_response.status_code, content, upstream_response, meter.trace_id)
    relay = SSERelay(api.shape, meter, drop_usage_chunk=drop_usage_chunk)
    events = _relay(api, meter, relay, upstream_response)
    # A client gone before the first event is sent leaves the generator unstarted, so its
    # `finally` never runs: record the call (and close the upstream) when it is dropped.
    weakref.finalize(events, meter.finish, upstream_response.aclose)
    response = StreamingHttpResponse(events, status=200, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a buffering proxy in front would hold back the tokens
    response["X-Trace-Id"] = meter.trace_id
    return response


async def _relay(api: Api, meter: CallMeter, relay: SSERelay, upstream_response: UpstreamResponse) -> AsyncIterator[bytes]:
    """Yield the upstream's events as they arrive; meter whatever happened, however the stream ends."""
    try:
        async for chunk in upstream_response.iter_chunks():
            out = relay.feed(chunk)
            if out:
                yield out
        tail = relay.flush()
        if tail:
            yield tail
        if not relay.completed:
            meter.fail("The upstream stream ended before the provider's end-of-stream event.")
    except UpstreamError as exc:
        meter.fail(f"The upstream stream broke off: {exc}")
        yield stream_error_event(api.shape, "The upstream stream broke off.")
    except BaseException:  # the client went away (cancelled, or the generator closed): keep what was seen
        meter.client_disconnected = True
        raise
    finally:
        meter.finish(before=upstream_response.aclose)


async def list_models(request: HttpRequest, product_name: str) -> HttpResponse:
    """`GET /llm/{product}/v1/models`: the models the product may use, for an authenticated caller."""
    headers = lower_headers(request)
    shape: ApiShape = "anthropic" if "anthropic-version" in headers else "openai"
    try:
        product = product_of(product_name)
        await authenticate(headers, product)
    except GatewayError as error:
        return render(error, shape)
    data = [
        {"id": model, "object": "model", "type": "model", "owned_by": provider, "display_name": name}
        for provider in ("anthropic", "openai")
        for model, name in known_models(provider)
        if product.allows_model(model)
    ]
    if product.allows_model(DEMO_MODEL):  # served by the gateway itself, in both API shapes
        data.append({"id": DEMO_MODEL, "object": "model", "type": "model", "owned_by": "posthog", "display_name": "PostHog offline demo (not a real model)"})
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "allowed_models": list(product.allowed_models) if product.allowed_models is not None else None,
        }
    )
