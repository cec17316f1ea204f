"""Slack's HTTP entry points. Thin: check size and signature, hand the body to events/interactivity, map the outcome.

Slack gives us 3 seconds and retries otherwise, so nothing slow happens here. A mention
costs one Redis round trip (the quota score and the workspaces' generation, which says
whether the cached workspace lookup still stands: workspaces.py) and one inbox write (the
relay in the worker process starts the workflow or posts the refusal); a picker click,
one Temporal signal. Both are served through `posthog_app.wsgi.SlackWSGIHandler`, which
leaves out the middleware they do not use.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from posthog_app.json_input import InvalidJSON, parse_json

from . import events, interactivity
from .errors import MalformedRequest, SlackRequestError
from .signing import check_body_size, verify_slack_signature

logger = logging.getLogger(__name__)


def _slack_endpoint(handle: Callable[[HttpRequest, bytes], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Refuse oversized and unsigned requests, then map typed errors to responses (the one place)."""

    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        try:
            meta = request.META
            check_body_size(meta.get("CONTENT_LENGTH"))
            body = request.body
            # The two headers read from the WSGI environ: `request.headers` would parse every header first.
            verify_slack_signature(body, {
                "X-Slack-Request-Timestamp": meta.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
                "X-Slack-Signature": meta.get("HTTP_X_SLACK_SIGNATURE"),
            })
            return handle(request, body)
        except SlackRequestError as error:
            if error.status in (400, 401, 413):
                logger.warning("refused Slack request to %s (%s): %s", request.path, error.status, error.reason)
            return JsonResponse({"error": error.code, "detail": error.reason}, status=error.status)

    view.__name__ = handle.__name__
    view.__doc__ = handle.__doc__
    return view


def _events(request: HttpRequest, body: bytes) -> HttpResponse:
    """Slack Events API: url_verification and app_mention."""
    try:
        envelope = parse_json(body)  # depth-limited, no lone surrogates or NULs: a 400, never a 500 later
    except InvalidJSON as exc:
        raise MalformedRequest(exc.reason) from None
    delivery = events.Delivery(
        retry_num=_int(request.META.get("HTTP_X_SLACK_RETRY_NUM")),
        retry_reason=request.META.get("HTTP_X_SLACK_RETRY_REASON", ""),
    )
    result = events.handle_envelope(envelope, delivery)
    if result.outcome is events.Outcome.CHALLENGE:
        return JsonResponse({"challenge": result.challenge})
    return HttpResponse(_OUTCOME_BODIES[result.outcome], content_type="application/json")


# What JsonResponse({"ok": True, "outcome": ...}) would encode, once per outcome instead of once per request.
_OUTCOME_BODIES = {outcome: json.dumps({"ok": True, "outcome": outcome.value}).encode() for outcome in events.Outcome}


def _interactivity(request: HttpRequest, body: bytes) -> HttpResponse:
    """Slack interactive components: the repository picker's buttons."""
    result = interactivity.handle_payload(interactivity.parse_payload(body))
    # Slack wants an empty 200 for block_actions; anything we tell the user went through the Web API.
    return HttpResponse(status=200, headers={"X-Outcome": result.outcome.value})


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


slack_events = _slack_endpoint(_events)
slack_interactivity = _slack_endpoint(_interactivity)
