"""Usage tagging: what the gateway stamps on every `$ai_generation` event it records.

The registry, not the caller, decides `$ai_billable`, so no client can mark its own
usage free by sending `"$ai_billable": false` or a retired product name.
"""
from __future__ import annotations

from typing import Any

from .products import ProductConfig, resolve_product


def tag_usage_properties(properties: dict[str, Any]) -> tuple[ProductConfig, dict[str, Any]]:
    """Return the product and a copy of `properties` with the canonical product and billable flag.

    The name the caller sent is kept as `$ai_product_requested` when it was an alias.
    Raises `UnknownProduct` when `$ai_product` names no product.
    """
    requested = properties.get("$ai_product")
    product = resolve_product(requested)
    tagged = dict(properties)
    tagged["$ai_product"] = product.name
    if requested != product.name:
        tagged["$ai_product_requested"] = requested
    tagged["$ai_billable"] = product.billable
    return product, tagged
