"""The LLM gateway product's public module: the only one other products and `temporal/` import.

The product registry: which product is this (aliases resolved), and is its usage billable.
"""
from __future__ import annotations

from .products import ProductConfig, UnknownProduct, is_billable, resolve_product

__all__ = ["ProductConfig", "UnknownProduct", "is_billable", "resolve_product"]
