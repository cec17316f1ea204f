"""The product registry decides what is billable; retired names can never escape billing."""
import pytest

from products.llm_gateway.products import (
    ALIASES,
    PRODUCTS,
    UnknownProduct,
    is_billable,
    known_product_names,
    resolve_product,
)
from products.llm_gateway.usage import tag_usage_properties


def test_the_three_products_and_their_billing():
    assert set(PRODUCTS) == {"posthog_code", "slack_app", "slack_app_routing"}
    assert is_billable("slack_app") is True
    assert is_billable("slack_app_routing") is True
    assert is_billable("posthog_code") is False


@pytest.mark.parametrize(
    "alias, product, billable",
    [
        ("slack-posthog-code", "slack_app_routing", True),
        ("slack-twig", "slack_app_routing", True),
        ("array", "posthog_code", False),
        ("twig", "posthog_code", False),
    ],
)
def test_aliases_resolve_to_current_products(alias, product, billable):
    assert resolve_product(alias).name == product
    assert is_billable(alias) is billable


def test_an_alias_never_points_at_another_alias_or_nowhere():
    for alias, target in ALIASES.items():
        assert target in PRODUCTS
        assert alias not in PRODUCTS


@pytest.mark.parametrize("name", ["", "slack", "SLACK_APP", "llm_gateway", None, 3])
def test_unknown_products_are_errors_not_free(name):
    with pytest.raises(UnknownProduct):
        resolve_product(name)
    with pytest.raises(UnknownProduct):
        is_billable(name)


def test_known_names_lists_products_and_aliases():
    assert set(known_product_names()) == set(PRODUCTS) | set(ALIASES)


def test_tagging_overrides_the_clients_billable_flag_and_keeps_the_requested_alias():
    product, tagged = tag_usage_properties({"$ai_product": "slack-twig", "$ai_billable": False, "x": 1})
    assert product.name == "slack_app_routing"
    assert tagged == {
        "$ai_product": "slack_app_routing",
        "$ai_product_requested": "slack-twig",
        "$ai_billable": True,
        "x": 1,
    }
    _, tagged = tag_usage_properties({"$ai_product": "posthog_code", "$ai_billable": True})
    assert tagged["$ai_billable"] is False and "$ai_product_requested" not in tagged
