"""Untrusted JSON is refused at the door with a reason, never a 500 further in."""
from __future__ import annotations

import pytest

from posthog_app.json_input import MAX_DEPTH, InvalidJSON, parse_json


def test_ordinary_json_passes_through():
    assert parse_json(b'{"a": [1, {"b": "caf\\u00e9"}], "c": null}') == {"a": [1, {"b": "café"}], "c": None}


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ('{"properties": ' + '{"a": ' * 600 + "1" + "}" * 600 + "}", "nested deeper"),
        ('{"text": "\\ud800"}', "surrogate"),
        ('{"\\udfff": 1}', "surrogate"),
        ('{"text": "a\\u0000b"}', "NUL"),
        (b"\xff\xfe", "not UTF-8"),
        ("{not json", "not valid JSON"),
        ('{"cost": NaN}', "NaN is not a JSON number"),
        ('{"cost": -Infinity}', "-Infinity is not a JSON number"),
        ('{"cost": 1e400}', "too large"),
    ],
)
def test_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidJSON, match=reason):
        parse_json(raw)


def test_depth_limit_is_exact():
    def nested(levels: int) -> str:
        return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)

    assert parse_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(InvalidJSON, match="nested deeper"):
        parse_json(nested(MAX_DEPTH + 1))
    with pytest.raises(InvalidJSON, match="nested deeper"):
        parse_json(nested(600))
