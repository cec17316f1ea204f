"""Parse untrusted JSON bodies into values every part of the system can store and pass on.

`json.loads` accepts input the rest of the stack cannot handle: nesting deep enough to
exhaust the recursion limit of whoever walks it next (a `RecursionError`, i.e. a 500),
lone UTF-16 surrogates (`"\\ud800"`, which PostgreSQL's jsonb and any UTF-8 encoder
refuse), NUL characters (which PostgreSQL text and jsonb cannot hold), and `NaN`,
`Infinity` or numbers too large for a double (which are not JSON, and jsonb refuses). Every JSON
body we accept, from Slack or from an API client, goes through `parse_json`, so
those are a clear `InvalidJSON` (a 400) at the door rather than a failure later.
"""
from __future__ import annotations

import json
from typing import Any

# Far deeper than any real Slack payload (blocks nest about ten levels) or usage event.
MAX_DEPTH = 64


class InvalidJSON(ValueError):
    """The body is not JSON we accept; `reason` says why in words fit for a 400 response."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Return the value of `raw`, or raise `InvalidJSON` saying what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidJSON("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidJSON(f"JSON nested deeper than {max_depth} levels") from None
    except InvalidJSON:
        raise
    except ValueError as exc:
        raise InvalidJSON(f"the body is not valid JSON ({exc})") from None
    check_json_value(value, max_depth=max_depth)
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InvalidJSON(f"the number {text[:40]} is too large")
    return value


def check_json_value(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise `InvalidJSON` if `value` nests deeper than `max_depth` or holds text nothing can store.

    Iterative, so a hostile depth cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise InvalidJSON(f"JSON nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidJSON("text may not contain NUL (\\u0000) characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJSON("text may not contain lone UTF-16 surrogates (such as \\ud800)") from None
