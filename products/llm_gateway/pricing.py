"""What a call cost in USD: the operators' overrides first, then genai-prices' price table.

genai-prices (pydantic's maintained price map) ships a data snapshot, so pricing works
offline; the package is pinned and upgraded like any dependency. An operator override
(`PriceOverride`, edited in the admin) replaces the package's figure for one model or a
name prefix. A model neither knows costs 0 and is marked so (`source="unknown"`), never
guessed.

Token counts follow genai-prices' convention: `input_tokens` counts every input token,
cache reads and writes included (OpenAI's `prompt_tokens`; Anthropic's `input_tokens`
plus its cache counts, which `Usage.total_input_tokens` adds up).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import genai_prices
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .demo_model import is_demo_model
from .models import PriceOverride

MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one call as the provider reported them."""

    input_tokens: int = 0  # OpenAI: prompt tokens (cached included); Anthropic: uncached input only
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    input_includes_cache: bool = True  # OpenAI True; Anthropic False

    @property
    def total_input_tokens(self) -> int:
        if self.input_includes_cache:
            return self.input_tokens
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class Price:
    cost_usd: Decimal
    source: str  # "override", "genai-prices" or "unknown"


OVERRIDES_CACHE_SECONDS = 30.0
_overrides: tuple[float, tuple[PriceOverride, ...]] | None = None  # (expires at, every override)


def _all_overrides() -> tuple[PriceOverride, ...]:
    """Every override, read at most once per `OVERRIDES_CACHE_SECONDS` per process.

    Saving or deleting one here forgets the copy at once (signals below); another process
    sees the change within `OVERRIDES_CACHE_SECONDS`.
    """
    global _overrides
    cached = _overrides
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    rows = tuple(PriceOverride.objects.all())
    _overrides = (time.monotonic() + OVERRIDES_CACHE_SECONDS, rows)
    return rows


def forget_overrides() -> None:
    """Read the overrides again on next use (after a change this process did not see, e.g. in tests)."""
    global _overrides
    _overrides = None


@receiver([post_save, post_delete], sender=PriceOverride)
def _forget_overrides(**kwargs: object) -> None:
    forget_overrides()


def find_override(provider: str, model: str) -> PriceOverride | None:
    """Return the override for `model`: the exact one, else the longest matching prefix."""
    candidates = [
        o
        for o in _all_overrides()
        if o.provider == provider and (o.model == model if not o.is_prefix else model.startswith(o.model))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda o: (not o.is_prefix, len(o.model)))


def cost_of(provider: str, model: str, usage: TokenUsage) -> Price:
    """Return what a call cost (may read the overrides: call it off the response path)."""
    if is_demo_model(model):
        return Price(Decimal(0), "demo")  # served in process (demo_model.py): nothing to pay anyone
    override = find_override(provider, model) if model else None
    if override is not None:
        cache_price = override.cache_read_usd_per_mtok
        if cache_price is None:
            cache_price = override.input_usd_per_mtok
        uncached = max(usage.total_input_tokens - usage.cache_read_tokens, 0)
        cost = (
            uncached * override.input_usd_per_mtok
            + usage.cache_read_tokens * cache_price
            + usage.output_tokens * override.output_usd_per_mtok
        ) / MTOK
        return Price(cost, "override")
    package_price = package_cost(provider, model, usage)
    if package_price is None:
        return Price(Decimal(0), "unknown")
    return Price(package_price, "genai-prices")


def package_cost(provider: str, model: str, usage: TokenUsage) -> Decimal | None:
    """genai-prices' cost for the call, or None for a model it does not know."""
    if not model:
        return None
    found = _package_model(provider, model)
    if found is None:
        return None
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    linear = _linear_prices(provider, model)
    if linear is not None and usage.total_input_tokens >= cached:
        return (
            (usage.total_input_tokens - cached) * linear.uncached
            + usage.cache_read_tokens * linear.cache_read
            + usage.cache_write_tokens * linear.cache_write
            + usage.output_tokens * linear.output
        ) / MTOK
    return _package_calc(found, usage.total_input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens)


def _package_calc(found, input_tokens: int, cache_read: int, cache_write: int, output: int) -> Decimal:
    provider_info, model_info = found
    calculation = model_info.calc_price(
        genai_prices.Usage(
            input_tokens=input_tokens,
            output_tokens=output,
            cache_read_tokens=cache_read or None,
            cache_write_tokens=cache_write or None,
        ),
        provider_info,
        genai_request_timestamp=datetime.now(tz=timezone.utc),
    )
    return Decimal(calculation.total_price)


@functools.lru_cache(maxsize=4096)
def _package_model(provider: str, model: str):
    """genai-prices' (provider, model) entry for a model name, or None; looked up once per name.

    Matching a name against the table walks every model's match rules (regular expressions
    included): measured, it was most of the cost of recording a call. The snapshot ships
    with the package, so an answer holds for the life of the process.
    """
    from genai_prices import data_snapshot

    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None


@dataclass(frozen=True)
class LinearPrices:
    """USD per million tokens of each kind, for a model whose price is a plain sum (no tiers)."""

    uncached: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal


LINEAR_PRICES_SECONDS = 3600.0  # genai-prices may date a price change; read it again hourly
_linear: dict[tuple[str, str], tuple[float, LinearPrices | None]] = {}


def _linear_prices(provider: str, model: str) -> LinearPrices | None:
    """The model's prices per kind of token as genai-prices computes them, when its price is linear.

    genai-prices' own calculation (unit decomposition) costs about as much as the rest of
    recording a call, for what is, for nearly every model, a sum of tokens times prices.
    So each model's four unit prices are read from the package itself (one million tokens
    of each kind), then checked against one call of mixed usage large enough to cross any
    tier: only when the package gives exactly the sum is the sum used; otherwise (tiered
    or conditional prices) every call asks the package. Same answers, to the last digit.
    """
    key = (provider, model)
    entry = _linear.get(key)
    now = time.monotonic()
    if entry is not None and entry[0] > now:
        return entry[1]
    found = _package_model(provider, model)
    linear = None
    if found is not None:
        million = 1_000_000
        base = _package_calc(found, million, 0, 0, 0)
        candidate = LinearPrices(
            uncached=base,
            cache_read=_package_calc(found, million, million, 0, 0),
            cache_write=_package_calc(found, million, 0, million, 0),
            output=_package_calc(found, 0, 0, 0, million),
        )
        probe = (3_456_789, 1_234_567, 345_679, 2_345_671)  # input (cache included), cache read, cache write, output
        expected = _package_calc(found, *probe)
        uncached = probe[0] - probe[1] - probe[2]
        computed = (
            uncached * candidate.uncached + probe[1] * candidate.cache_read + probe[2] * candidate.cache_write
            + probe[3] * candidate.output
        ) / MTOK
        if computed == expected:
            linear = candidate
    _linear[key] = (now + LINEAR_PRICES_SECONDS, linear)
    return linear


@dataclass(frozen=True)
class ModelPriceRow:
    """One row of the admin's price table."""

    provider: str
    model: str
    name: str
    input_usd_per_mtok: Decimal | None
    output_usd_per_mtok: Decimal | None
    cache_read_usd_per_mtok: Decimal | None
    override: PriceOverride | None


def known_models(provider: str) -> list[tuple[str, str]]:
    """(model id, display name) of every model genai-prices knows for `provider`."""
    from genai_prices import data_snapshot

    found = data_snapshot.find_provider_by_id(data_snapshot.get_snapshot().providers, provider)
    return [(m.id, m.name or m.id) for m in found.models] if found else []


def price_table(allows: "callable") -> list[ModelPriceRow]:
    """The effective price per model, for every known model `allows(model)` accepts."""
    from genai_prices import data_snapshot

    rows = []
    snapshot = data_snapshot.get_snapshot()
    for provider in PriceOverride.Provider.values:
        found = data_snapshot.find_provider_by_id(snapshot.providers, provider)
        for model in found.models if found else []:
            if not allows(model.id):
                continue
            override = find_override(provider, model.id)
            prices = model.prices if not isinstance(model.prices, list) else model.prices[-1].prices
            rows.append(
                ModelPriceRow(
                    provider=provider,
                    model=model.id,
                    name=model.name or model.id,
                    input_usd_per_mtok=override.input_usd_per_mtok if override else _flat(getattr(prices, "input_mtok", None)),
                    output_usd_per_mtok=override.output_usd_per_mtok if override else _flat(getattr(prices, "output_mtok", None)),
                    cache_read_usd_per_mtok=(override.cache_read_usd_per_mtok if override else _flat(getattr(prices, "cache_read_mtok", None))),
                    override=override,
                )
            )
    return rows


def _flat(price) -> Decimal | None:
    """A flat price as is; a tiered one by its base (first) tier."""
    if price is None or isinstance(price, Decimal):
        return price
    return getattr(price, "base", None)
