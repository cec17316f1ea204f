"""The REST API's JSON parser: DRF's, with the limits of `posthog_app.json_input`."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .json_input import InvalidJSON, parse_json


class StrictJSONParser(JSONParser):
    """Too deep, a lone surrogate or a NUL is a 400 naming the problem, never a 500 later on."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            return parse_json(raw.decode(encoding) if isinstance(raw, bytes) else raw)
        except UnicodeDecodeError:
            raise ParseError(f"JSON parse error - the body is not {encoding}") from None
        except InvalidJSON as exc:
            raise ParseError(f"JSON parse error - {exc.reason}") from None
