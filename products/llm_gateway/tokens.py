"""Server-minted credentials for the gateway: run tokens and service tokens.

A server token is what our own code (the repository router, a task run's agent) presents
to the gateway instead of a person's key. It is minted by the server for one project and
one product (and, for a task run, one run), expires quickly, and is the only credential a
product with `server_credential_required` accepts, so a user's own key cannot reach it.

The token itself (format, signature, expiry) is the accounts product's
(`products/accounts/server_tokens.py`), because the REST API's quota endpoint accepts it
too; this module adds what the gateway knows: which products exist.
"""
from __future__ import annotations

from datetime import timedelta

from products.accounts.facade import (
    SERVER_TOKEN_PREFIX,
    InvalidServerToken,
    ServerToken,
    read_server_token,
    sign_server_token,
)

from .products import UnknownProduct, resolve_product

__all__ = ["DEFAULT_TTL", "SERVER_TOKEN_PREFIX", "InvalidServerToken", "ServerToken", "mint_server_token", "verify_server_token"]

DEFAULT_TTL = timedelta(hours=2)


def mint_server_token(project_id: int, product: str, *, run_id: int | None = None, ttl: timedelta = DEFAULT_TTL) -> str:
    """Return a token for `project_id` that the gateway accepts for `product` until `ttl` from now.

    `product` may be an alias; the token names the current product. Raises `UnknownProduct`
    for a name the registry does not know, and `ValueError` for a lifetime outside (0, 1 day].
    """
    return sign_server_token(project_id, resolve_product(product).name, run_id=run_id, ttl=ttl)


def verify_server_token(token: str, product: str) -> ServerToken:
    """Return what `token` grants for `product`; raise `InvalidServerToken` otherwise."""
    granted = read_server_token(token)
    try:
        wanted = resolve_product(product).name
    except UnknownProduct:
        raise InvalidServerToken(f"The server token is not valid for product {product!r}.") from None
    if granted.product != wanted:
        raise InvalidServerToken(f"The server token was minted for product {granted.product}, not {wanted}.")
    return granted
