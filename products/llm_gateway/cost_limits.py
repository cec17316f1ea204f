"""Cost limits in USD per product and per user, and the Redis windows that count spend against them.

Limits (settings, overridable per product with `LLM_GATEWAY_PRODUCT_COST_LIMITS`, JSON):

    product         LLM_GATEWAY_PRODUCT_COST_USD over LLM_GATEWAY_PRODUCT_COST_WINDOW_SECONDS
                    ($1000 / 24 h): all callers of the product together
    user burst      LLM_GATEWAY_USER_BURST_USD over ..._WINDOW_SECONDS ($100 / 24 h)
    user sustained  LLM_GATEWAY_USER_SUSTAINED_USD over ..._WINDOW_SECONDS ($1000 / 30 days)
                    per user of a product: the key's owner, else the end user the caller names

    {"slack_app_routing": {"product_usd": 50, "product_window_seconds": 3600,
                           "user_burst_usd": 5, "user_sustained_usd": 20}}

Redis layout (the gateway's own; a contract for anyone reading spend):

    @posthog/llm-gateway-cost/<subject>/<window_seconds>/<bucket>   string, micro-USD (integer)
        subject: product/<product> or user/<product>/<user>; user: u<user_id>, or
        e<project_id>:<end user> for an end user named by the caller (scoped to its project)

Each window is a sliding window of `BUCKETS` buckets (bucket = window / 24): spend is
added to the current bucket (INCRBY, expiring after the window), and the window's spend
is the sum of its last 24 buckets (one MGET). A denial's retry-after is when enough old
buckets have slid out of the window to bring the spend back under the limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

KEY_PREFIX = "@posthog/llm-gateway-cost/"
BUCKETS = 24
MICRO = Decimal(1_000_000)


@dataclass(frozen=True)
class Window:
    """A limit of `usd` over the last `seconds`."""

    name: str  # "product", "user_burst", "user_sustained"
    usd: Decimal
    seconds: int

    @property
    def bucket_seconds(self) -> int:
        return max(1, self.seconds // BUCKETS)

    @property
    def limit_micro(self) -> int:
        return int((self.usd * MICRO).to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class CostLimits:
    product: Window
    user_burst: Window
    user_sustained: Window


def limits_for(product: str) -> CostLimits:
    """Return the cost limits of `product`: the settings' defaults, with the product's overrides."""
    own = (getattr(settings, "LLM_GATEWAY_PRODUCT_COST_LIMITS", None) or {}).get(product, {})

    def window(name: str, usd_setting: str, seconds_setting: str) -> Window:
        usd = own.get(f"{name}_usd", getattr(settings, usd_setting))
        seconds = own.get(f"{name}_window_seconds", getattr(settings, seconds_setting))
        return Window(name, Decimal(str(usd)), int(seconds))

    return CostLimits(
        product=window("product", "LLM_GATEWAY_PRODUCT_COST_USD", "LLM_GATEWAY_PRODUCT_COST_WINDOW_SECONDS"),
        user_burst=window("user_burst", "LLM_GATEWAY_USER_BURST_USD", "LLM_GATEWAY_USER_BURST_WINDOW_SECONDS"),
        user_sustained=window(
            "user_sustained", "LLM_GATEWAY_USER_SUSTAINED_USD", "LLM_GATEWAY_USER_SUSTAINED_WINDOW_SECONDS"
        ),
    )


def to_micro_usd(cost_usd: Decimal) -> int:
    return int((Decimal(cost_usd) * MICRO).to_integral_value(rounding=ROUND_HALF_UP))


def product_subject(product: str) -> str:
    return f"product/{product}"


def user_subject(product: str, user_id: int | None, end_user: str, project_id: int) -> str | None:
    """The user a call is counted for: the key's owner, else the caller-named end user; None if neither."""
    if user_id is not None:
        return f"user/{product}/u{int(user_id)}"
    if end_user:
        return f"user/{product}/e{int(project_id)}:{end_user[:200]}"
    return None


def bucket_of(window: Window, now: float) -> int:
    return int(now // window.bucket_seconds)


def bucket_keys(subject: str, window: Window, now: float) -> list[tuple[int, str]]:
    """The window's buckets, oldest first: [(bucket, key)]."""
    current = bucket_of(window, now)
    return [
        (b, f"{KEY_PREFIX}{subject}/{window.seconds}/{b}") for b in range(current - BUCKETS + 1, current + 1)
    ]


def current_key(subject: str, window: Window, now: float) -> str:
    return f"{KEY_PREFIX}{subject}/{window.seconds}/{bucket_of(window, now)}"


@dataclass(frozen=True)
class WindowState:
    spent_micro: int
    limit_micro: int
    retry_after: int  # seconds until spend is back under the limit (0 when it is)

    @property
    def exceeded(self) -> bool:
        return self.spent_micro >= self.limit_micro


def window_state(window: Window, buckets: list[tuple[int, int]], now: float) -> WindowState:
    """Judge a window from its buckets' spend [(bucket, micro-USD)], oldest first."""
    total = sum(amount for _, amount in buckets)
    limit = window.limit_micro
    if total < limit:
        return WindowState(total, limit, 0)
    remaining = total
    retry_after = window.seconds
    for bucket, amount in buckets:
        remaining -= amount
        if remaining < limit:
            # Bucket b leaves the window when the current bucket becomes b + BUCKETS.
            retry_after = max(1, math.ceil((bucket + BUCKETS) * window.bucket_seconds - now))
            break
    return WindowState(total, limit, retry_after)


def format_usd(micro: int) -> str:
    return f"${Decimal(micro) / MICRO:,.2f}"
