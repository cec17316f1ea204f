"""The LLM gateway product's public module: the only one other products and `temporal/` import.

The product registry: which product is this (aliases resolved), and is its usage billable.
The usage endpoint itself is reached over HTTP, not imported. `DEMO_MODEL` names the offline
demo model the gateway serves itself (demo_model.py), for callers choosing a model.
"""
from __future__ import annotations

from .demo_model import DEMO_MODEL, DEMO_NOTICE
from .products import ProductConfig, UnknownProduct, is_billable, known_product_names, resolve_product
from .tokens import InvalidServerToken, mint_server_token

__all__ = [
    "DEMO_MODEL",
    "DEMO_NOTICE",
    "InvalidServerToken",
    "ProductConfig",
    "UnknownProduct",
    "is_billable",
    "known_product_names",
    "mint_server_token",
    "resolve_product",
]
