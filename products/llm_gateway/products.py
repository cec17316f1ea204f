"""The registry of products that make LLM calls, and whether their usage is billable.

This is the only module the rest of the code asks "which product is this, and is it
billable?" (`resolve_product`, `is_billable`). Old product names keep working through
aliases, so a caller that still sends `slack-twig` is billed like `slack_app_routing`
and can never escape billing by using a retired name.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductConfig:
    """One product that makes LLM calls.

    `allowed_models` is None when any model may be used; otherwise usage for another
    model is refused. `allow_personal_api_keys` says whether a personal API key (rather
    than the service itself) may record usage for the product.
    """

    name: str
    billable: bool
    allowed_models: frozenset[str] | None = None
    allow_personal_api_keys: bool = True
    description: str = ""

    def allows_model(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


class UnknownProduct(LookupError):
    """No product (or alias) has this name."""

    def __init__(self, name: object) -> None:
        super().__init__(f"Unknown product {name!r}; expected one of: {', '.join(known_product_names())}")
        self.name = name


PRODUCTS: dict[str, ProductConfig] = {
    config.name: config
    for config in (
        ProductConfig(
            name="posthog_code",
            billable=False,
            description="PostHog Code used directly (desktop and CLI); billed elsewhere.",
        ),
        ProductConfig(
            name="slack_app",
            billable=True,
            description="The agent doing Slack-initiated work.",
        ),
        ProductConfig(
            name="slack_app_routing",
            billable=True,
            description="The classifier that routes a Slack mention to a repository.",
        ),
    )
}

# Retired name -> current name. An alias never points at another alias.
ALIASES: dict[str, str] = {
    "slack-posthog-code": "slack_app_routing",
    "slack-twig": "slack_app_routing",
    "array": "posthog_code",
    "twig": "posthog_code",
}


def known_product_names() -> list[str]:
    """Every accepted name, current names first."""
    return sorted(PRODUCTS) + sorted(ALIASES)


def resolve_product(name: str) -> ProductConfig:
    """Return the product called `name` (a current name or an alias); raise `UnknownProduct`."""
    if not isinstance(name, str):
        raise UnknownProduct(name)
    canonical = ALIASES.get(name, name)
    try:
        return PRODUCTS[canonical]
    except KeyError:
        raise UnknownProduct(name) from None


def is_billable(name: str) -> bool:
    """Say whether usage recorded for product `name` counts against AI credits.

    Raises `UnknownProduct` for a name that is neither a product nor an alias: an
    unknown product is an error, never "free".
    """
    return resolve_product(name).billable
