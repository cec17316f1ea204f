"""The gateway's admin: price overrides, the effective price table, and usage per product and model.

The two read-only pages hang off the overrides' admin (`price-table/`, `usage/`), linked
from its changelist. Usage comes through billing's facade (`usage_by_product_and_model`);
the gateway never reads billing's tables itself.
"""
from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from products.billing.facade import usage_by_product_and_model

from .models import PriceOverride
from .pricing import price_table
from .products import PRODUCTS

USAGE_PERIODS = {"1": 1, "7": 7, "30": 30, "90": 90, "all": None}


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):
    list_display = ("provider", "model", "is_prefix", "input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "note", "updated_at")
    list_filter = ("provider", "is_prefix")
    search_fields = ("model", "note")
    readonly_fields = ("updated_at",)

    def get_urls(self):
        own = [
            path("price-table/", self.admin_site.admin_view(self.price_table_view), name="llm_gateway_price_table"),
            path("usage/", self.admin_site.admin_view(self.usage_view), name="llm_gateway_usage"),
        ]
        return own + super().get_urls()

    def _context(self, request: HttpRequest, title: str) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title}

    def price_table_view(self, request: HttpRequest) -> TemplateResponse:
        """Every model genai-prices knows that some product may use, at its price in force."""
        allowed_by = {}

        def allows(model: str) -> bool:
            names = [p.name for p in PRODUCTS.values() if p.allowed_models is not None and p.allows_model(model)]
            open_products = [p.name for p in PRODUCTS.values() if p.allowed_models is None]
            allowed_by[model] = names + open_products
            return bool(names) or bool(open_products)

        rows = price_table(allows)
        context = {
            **self._context(request, "LLM price table"),
            "rows": [(row, ", ".join(allowed_by.get(row.model, []))) for row in rows],
            "restricted": {p.name: ", ".join(p.allowed_models) for p in PRODUCTS.values() if p.allowed_models is not None},
        }
        return TemplateResponse(request, "admin/llm_gateway/price_table.html", context)

    def usage_view(self, request: HttpRequest) -> TemplateResponse:
        """Calls, tokens, cost and credits per product and model over the chosen period."""
        period = request.GET.get("days", "30")
        if period not in USAGE_PERIODS:
            period = "30"
        days = USAGE_PERIODS[period]
        since = timezone.now() - timedelta(days=days) if days else None
        rows = usage_by_product_and_model(since=since)
        context = {
            **self._context(request, "LLM usage per product and model"),
            "rows": rows,
            "period": period,
            "periods": list(USAGE_PERIODS),
            "totals": {
                "calls": sum(r.calls for r in rows),
                "errors": sum(r.errors for r in rows),
                "input_tokens": sum(r.input_tokens for r in rows),
                "output_tokens": sum(r.output_tokens for r in rows),
                "cost_usd": sum((r.cost_usd for r in rows), 0),
                "credits": sum(r.credits for r in rows),
                "billable_credits": sum(r.billable_credits for r in rows),
            },
        }
        return TemplateResponse(request, "admin/llm_gateway/usage.html", context)
