"""The gateway's endpoints (async views, served by the ASGI application): thin, one call each.

Not DRF views: they speak the providers' wire formats (and error shapes), not this API's,
and stay out of the OpenAPI schema.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .proxy import ANTHROPIC_MESSAGES, OPENAI_CHAT, handle_call, list_models


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest, product: str) -> HttpResponse:
    """OpenAI-compatible `POST /llm/{product}/v1/chat/completions`."""
    return await handle_call(request, product, OPENAI_CHAT)


@csrf_exempt
@require_POST
async def messages(request: HttpRequest, product: str) -> HttpResponse:
    """Anthropic-compatible `POST /llm/{product}/v1/messages`."""
    return await handle_call(request, product, ANTHROPIC_MESSAGES)


@require_GET
async def models(request: HttpRequest, product: str) -> HttpResponse:
    """`GET /llm/{product}/v1/models`: what the product may use."""
    return await list_models(request, product)
