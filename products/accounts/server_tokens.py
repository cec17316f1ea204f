"""Server tokens: credentials our own server mints for one project (and one product, one run).

Our code (the repository router, a task run's agent) presents one to the LLM gateway
instead of a person's key, and the gateway, when it reads quota from a remote deployment,
presents the same token to that deployment's quota endpoint. Both verify it here, with
SECRET_KEY and no database: a token is a `django.core.signing` value of
`{"p": project_id, "pr": product, "r": run_id, "e": expires_at}` behind `phs_`, salted so
that no other signed value can pass for one. Tokens cannot be revoked before they expire,
hence short lifetimes (at most a day). Which products exist is the gateway's business: it
checks the product on top of `read_server_token`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.core import signing

SERVER_TOKEN_PREFIX = "phs_"
MAX_TTL = timedelta(days=1)
TOKEN_SALT = "products.llm_gateway.server-token.v1"  # the salt tokens were first minted with; keep it


@dataclass(frozen=True)
class ServerToken:
    project_id: int
    product: str
    run_id: int | None
    expires_at: float  # Unix seconds


class InvalidServerToken(ValueError):
    """Forged, expired, malformed, or for something else; the message says which (never the token)."""


def sign_server_token(project_id: int, product: str, *, run_id: int | None, ttl: timedelta) -> str:
    """Return a token for `project_id` and `product` (already a canonical product name), valid for `ttl`."""
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"A server token lives more than 0 seconds and at most {MAX_TTL}; asked for {ttl}.")
    payload = {
        "p": int(project_id),
        "pr": str(product),
        "r": None if run_id is None else int(run_id),
        "e": round(time.time() + ttl.total_seconds(), 3),
    }
    return SERVER_TOKEN_PREFIX + signing.dumps(payload, salt=TOKEN_SALT, compress=False)


def read_server_token(token: str) -> ServerToken:
    """Return what `token` grants if its signature holds and it has not expired; `InvalidServerToken` otherwise."""
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
    return granted


class ServerTokenPrincipal:
    """Who a request authenticated by a server token is, for DRF: our own server, for one project.

    Not a user: it belongs to no organization, and a view reaches only the project the token
    names (`ProjectScopedAPIView.get_project`), and only views that accept server tokens.
    """

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token: ServerToken) -> None:
        self.token = token

    def __str__(self) -> str:
        return f"server token for project #{self.token.project_id} ({self.token.product})"
