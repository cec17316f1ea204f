"""Server tokens: minted for one project and product, short-lived, and useless for anything else."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import signing

from products.accounts.server_tokens import TOKEN_SALT
from products.llm_gateway.tokens import (
    SERVER_TOKEN_PREFIX,
    InvalidServerToken,
    mint_server_token,
    verify_server_token,
)


def test_a_token_grants_its_project_product_and_run():
    token = mint_server_token(12, "slack_app", run_id=34)
    assert token.startswith(SERVER_TOKEN_PREFIX)
    granted = verify_server_token(token, "slack_app")
    assert (granted.project_id, granted.product, granted.run_id) == (12, "slack_app", 34)
    assert time.time() < granted.expires_at <= time.time() + 2 * 3600 + 1


def test_an_alias_is_minted_and_verified_as_the_current_product():
    token = mint_server_token(1, "slack-twig")
    assert verify_server_token(token, "slack_app_routing").product == "slack_app_routing"
    assert verify_server_token(token, "slack-posthog-code").product == "slack_app_routing"


def test_another_product_is_refused():
    with pytest.raises(InvalidServerToken, match="minted for product slack_app"):
        verify_server_token(mint_server_token(1, "slack_app"), "posthog_code")


def test_an_expired_token_is_refused(monkeypatch):
    token = mint_server_token(1, "slack_app", ttl=timedelta(seconds=5))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 6)
    with pytest.raises(InvalidServerToken, match="expired"):
        verify_server_token(token, "slack_app")


def test_a_token_signed_with_another_salt_or_key_is_refused(settings):
    payload = {"p": 1, "pr": "slack_app", "r": None, "e": time.time() + 60}
    with pytest.raises(InvalidServerToken, match="signature"):
        verify_server_token(SERVER_TOKEN_PREFIX + signing.dumps(payload, salt="another"), "slack_app")
    forged = SERVER_TOKEN_PREFIX + signing.dumps(payload, salt=TOKEN_SALT, key="x" * 60)
    with pytest.raises(InvalidServerToken, match="signature"):
        verify_server_token(forged, "slack_app")


@pytest.mark.parametrize("value", ["", "phx_abc", "phs_", "phs_abc:def"])
def test_garbage_is_refused(value):
    with pytest.raises(InvalidServerToken):
        verify_server_token(value, "slack_app")


def test_minting_refuses_unknown_products_and_long_lives():
    from products.llm_gateway.products import UnknownProduct

    with pytest.raises(UnknownProduct):
        mint_server_token(1, "mystery")
    with pytest.raises(ValueError):
        mint_server_token(1, "slack_app", ttl=timedelta(days=2))
