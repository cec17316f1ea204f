"""Prices: the gateway's sum per kind of token gives genai-prices' own answer, to the last digit."""
import random

import genai_prices
import pytest
from genai_prices import data_snapshot

from products.llm_gateway.pricing import TokenUsage, package_cost


def _models():
    snapshot = data_snapshot.get_snapshot()
    for provider in ("openai", "anthropic"):
        for model in data_snapshot.find_provider_by_id(snapshot.providers, provider).models:
            yield provider, model.id


def _package(provider, model, usage):
    try:
        return genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.total_input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens or None,
                cache_write_tokens=usage.cache_write_tokens or None,
            ),
            model_ref=model,
            provider_id=provider,
        ).total_price
    except LookupError:
        return None


def test_every_known_model_costs_what_genai_prices_says():
    rng = random.Random(7)
    checked = 0
    for provider, model in _models():
        for _ in range(5):
            cache_read, cache_write = rng.randint(0, 80_000), rng.randint(0, 20_000)
            usage = TokenUsage(
                input_tokens=cache_read + cache_write + rng.randint(0, 400_000),  # OpenAI's convention: cache included
                output_tokens=rng.randint(0, 100_000),
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            )
            assert package_cost(provider, model, usage) == _package(provider, model, usage), (provider, model, usage)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("usage", [TokenUsage(), TokenUsage(input_tokens=10, output_tokens=3)])
def test_anthropic_usage_counts_cache_on_top_of_input(usage):
    anthropic = TokenUsage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cache_read_tokens=5, cache_write_tokens=7,
        input_includes_cache=False,
    )
    assert package_cost("anthropic", "claude-3-5-sonnet-latest", anthropic) == _package("anthropic", "claude-3-5-sonnet-latest", anthropic)


def test_an_unknown_model_has_no_package_price():
    assert package_cost("openai", "no-such-model-anywhere", TokenUsage(input_tokens=5)) is None
