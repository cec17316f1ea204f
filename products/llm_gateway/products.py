"""The registry of products that make LLM calls, and whether their usage is billable.

This is the only module the rest of the code asks "which product is this, is it
billable, which models may it use and who may call it?" (`resolve_product`, `is_billable`). Old product names keep working through
aliases, so a caller that still sends `slack-twig` is billed like `slack_app_routing`
and can never escape billing by using a retired name.
"""
from __future__ import annotations

from dataclasses import dataclass

from .demo_model import DEMO_MODEL


@dataclass(frozen=True)
class ProductConfig:
    """One product that makes LLM calls.

    `allowed_models` is None when any model may be used; otherwise a model must match one
    entry, exactly or, for an entry ending in `*`, by the prefix before it
    (`"claude-*"` allows `claude-sonnet-4-5`). `allow_personal_api_keys` says whether a
    personal API key may act for the product at all (record usage, call the gateway).
    `server_credential_required` narrows the gateway to server tokens (`phs_...`, minted by
    our own code for one project and product), so a user's own key cannot spend on the
    product's behalf even when it may record usage for it.
    """

    name: str
    billable: bool
    allowed_models: tuple[str, ...] | None = None
    allow_personal_api_keys: bool = True
    server_credential_required: bool = False
    description: str = ""

    def allows_model(self, model: str) -> bool:
        if self.allowed_models is None:
            return True
        if not isinstance(model, str) or not model:
            return False
        return any(
            model.startswith(entry[:-1]) if entry.endswith("*") else model == entry for entry in self.allowed_models
        )

    def allows_personal_api_keys_at_gateway(self) -> bool:
        """Say whether a personal API key may call the gateway for this product."""
        return self.allow_personal_api_keys and not self.server_credential_required


class UnknownProduct(LookupError):
    """No product (or alias) has this name."""

    def __init__(self, name: object) -> None:
        super().__init__(f"Unknown product {name!r}; expected one of: {', '.join(known_product_names())}")
        self.name = name


# The agent works with the current Claude and GPT families; the router with small, cheap models
# (and Claude, which usage already recorded for the router names).
# `posthog-demo` is the offline demo model the gateway serves itself (demo_model.py) when no
# provider key is configured, so `make run` shows the whole task loop.
AGENT_MODELS = ("claude-*", "gpt-4o*", "gpt-4.1*", "gpt-5*", "o3*", "o4-mini*", DEMO_MODEL)
ROUTING_MODELS = ("gpt-4o-mini*", "gpt-4.1-mini*", "gpt-4.1-nano*", "gpt-5-mini*", "gpt-5-nano*", "claude-*")

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
            allowed_models=AGENT_MODELS,
            server_credential_required=True,
            description="The agent doing Slack-initiated work.",
        ),
        ProductConfig(
            name="slack_app_routing",
            billable=True,
            allowed_models=ROUTING_MODELS,
            server_credential_required=True,
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
