"""Server-minted credentials for the gateway: run tokens and service tokens.

A server token is what our own code (the repository router, a task run's agent) presents
to the gateway instead of a person's key. It is minted by the server for one project and
one product (and, for a task run, one run), expires quickly, and is the only credential a
product with `server_credential_required` accepts, so a user's own key cannot reach it.

SKELETON (issue 8): the signatures are fixed here; the gateway work fills them in.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

SERVER_TOKEN_PREFIX = "phs_"
DEFAULT_TTL = timedelta(hours=2)


@dataclass(frozen=True)
class ServerToken:
    project_id: int
    product: str
    run_id: int | None
    expires_at: float  # Unix seconds


class InvalidServerToken(ValueError):
    """Forged, expired, or minted for another product; the message says which (never the token)."""


def mint_server_token(project_id: int, product: str, *, run_id: int | None = None, ttl: timedelta = DEFAULT_TTL) -> str:
    """Return a token for `project_id` that the gateway accepts for `product` until `ttl` from now."""
    raise NotImplementedError


def verify_server_token(token: str, product: str) -> ServerToken:
    """Return what `token` grants for `product`; raise `InvalidServerToken` otherwise."""
    raise NotImplementedError
