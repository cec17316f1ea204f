"""Throttles: who may spend right now. Each is a small class with a `scope` and one async check.

The gateway's views build one `ThrottleContext` per request and call `check_throttles`;
the chain runs concurrently and the first denial in list order wins (a denial is data:
logged and rendered as a 429 with `Retry-After`, never raised). After a call has been
metered, `record_spend` tells the throttles that count spend (live credits, cost windows).

SKELETON (issue 8): the interface is fixed here so the views and the throttles can be
built apart; the throttles themselves are filled in by the throttle work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class ThrottleContext:
    """Everything a throttle may look at; built once per request, before the upstream call."""

    product: str  # canonical product name (aliases resolved)
    billable: bool  # from the registry
    project_id: int
    project_api_token: str
    organization_id: int
    credential: str  # the raw credential of this request: every check of the request uses this one
    credential_kind: str  # "personal_api_key" or "server_token"
    user_id: int | None = None  # the key's owner; None for a server token
    end_user: str = ""  # the end user the caller names (OpenAI `user`, Anthropic `metadata.user_id`)
    model: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Denial:
    """Why a request may not go upstream now."""

    scope: str  # the throttle's scope, e.g. "ai_credits", "live_credits", "product_cost", "user_cost"
    message: str  # shown to the caller
    retry_after: int  # seconds, for the Retry-After header (at least 1)


@dataclass(frozen=True)
class Spend:
    """What one metered call cost, for the throttles that count spend."""

    cost_usd: Decimal
    credits: int


async def check_throttles(ctx: ThrottleContext) -> Denial | None:
    """Run every throttle for `ctx` concurrently; return the first denial in list order, or None."""
    return None


async def record_spend(ctx: ThrottleContext, spend: Spend) -> None:
    """Count a metered call's spend against the throttles that track it (never raises)."""
    return None
