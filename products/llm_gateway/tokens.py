"""Server-minted credentials for the gateway: run tokens and service tokens.

A server token is what our own code (the repository router, a task run's agent) presents
to the gateway instead of a person's key. It is minted by the server for one project and
one product (and, for a task run, one run), expires quickly, and is the only credential a
product with `server_credential_required` accepts, so a user's own key cannot reach it.

Format: `phs_` + a `django.core.signing` value (salted with `TOKEN_SALT`, so no other
signed value of the project can pass for one) of `{"p": project_id, "pr": product,
"r": run_id, "e": expires_at}`. Stateless: verifying needs SECRET_KEY and no database;
a token cannot be revoked before it expires, hence the short default lifetime.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.core import signing

from .products import UnknownProduct, resolve_product

SERVER_TOKEN_PREFIX = "phs_"
DEFAULT_TTL = timedelta(hours=2)
MAX_TTL = timedelta(days=1)
TOKEN_SALT = "products.llm_gateway.server-token.v1"


@dataclass(frozen=True)
class ServerToken:
    project_id: int
    product: str
    run_id: int | None
    expires_at: float  # Unix seconds


class InvalidServerToken(ValueError):
    """Forged, expired, or minted for another product; the message says which (never the token)."""


def mint_server_token(project_id: int, product: str, *, run_id: int | None = None, ttl: timedelta = DEFAULT_TTL) -> str:
    """Return a token for `project_id` that the gateway accepts for `product` until `ttl` from now.

    `product` may be an alias; the token names the current product. Raises `UnknownProduct`
    for a name the registry does not know, and `ValueError` for a lifetime outside (0, 1 day].
    """
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"A server token lives more than 0 seconds and at most {MAX_TTL}; asked for {ttl}.")
    payload = {
        "p": int(project_id),
        "pr": resolve_product(product).name,
        "r": None if run_id is None else int(run_id),
        "e": round(time.time() + ttl.total_seconds(), 3),
    }
    return SERVER_TOKEN_PREFIX + signing.dumps(payload, salt=TOKEN_SALT, compress=False)


def verify_server_token(token: str, product: str) -> ServerToken:
    """Return what `token` grants for `product`; raise `InvalidServerToken` otherwise."""
    if not isinstance(token, str) or not token.startswith(SERVER_TOKEN_PREFIX):
        raise InvalidServerToken("Not a server token.")
    try:
        payload = signing.loads(token[len(SERVER_TOKEN_PREFIX) :], salt=TOKEN_SALT)
    except signing.BadSignature:
        raise InvalidServerToken("Invalid server token (bad signature).") from None
    try:
        granted = ServerToken(
            project_id=int(payload["p"]),
            product=str(payload["pr"]),
            run_id=None if payload.get("r") is None else int(payload["r"]),
            expires_at=float(payload["e"]),
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidServerToken("Invalid server token (malformed).") from None
    if granted.expires_at <= time.time():
        raise InvalidServerToken("The server token has expired.")
    try:
        wanted = resolve_product(product).name
    except UnknownProduct:
        raise InvalidServerToken(f"The server token is not valid for product {product!r}.") from None
    if granted.product != wanted:
        raise InvalidServerToken(f"The server token was minted for product {granted.product}, not {wanted}.")
    return granted
