"""The LLM gateway product's public module: the only one other products and `temporal/` import.

The product registry: which product is this (aliases resolved), and is its usage billable.
The usage endpoint itself is reached over HTTP, not imported.
"""
from __future__ import annotations

from .products import ProductConfig, UnknownProduct, is_billable, known_product_names, resolve_product
from .tokens import InvalidServerToken, mint_server_token

__all__ = [
    "InvalidServerToken",
    "ProductConfig",
    "UnknownProduct",
    "is_billable",
    "known_product_names",
    "mint_server_token",
    "resolve_product",
]
