"""Who is calling the gateway, and for which project: one credential, checked once, used throughout.

The credential is read from `x-api-key` first, then `Authorization: Bearer` (a caller
sending both is judged by `x-api-key` alone), and that same value is the one every later
check of the request sees (`Caller.credential`, handed to the throttles): the seed's
bypass, where one check read one header and the quota check another, cannot happen.

Two kinds: a personal API key (`phx_...`, scope `llm_gateway:read`), or a server token
(`phs_...`, see tokens.py) minted by our own code for one project and product. Each call
is attributed to exactly one project the caller may use: the one a server token or a
key scoped to a single project names; else the `X-Project-Id` header (checked against
membership and the key's scoping); else the caller's only project. Refusals are typed
(errors.py): 401 no or bad credential, 403 missing scope or a server-only product,
400 ambiguous project, 404 a project that is not the caller's (or does not exist).
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from products.accounts.facade import (
    PERSONAL_API_KEY_PREFIX,
    PersonalAPIKey,
    Project,
    get_visible_project,
    scopes_grant,
    visible_projects,
)

from .db import run_auth
from .errors import BadRequest, NotFound, PermissionDenied, Unauthenticated
from .products import ProductConfig
from .tokens import SERVER_TOKEN_PREFIX, InvalidServerToken, verify_server_token

REQUIRED_SCOPE = "llm_gateway:read"
NO_SUCH_PROJECT = -1  # what an X-Project-Id that is not an id reads as: no project has it
PROJECT_HEADER = "x-project-id"

CredentialKind = Literal["personal_api_key", "server_token"]


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request and the project its call is attributed to."""

    kind: CredentialKind
    credential: str  # the raw value, as sent: every check of the request uses this one
    project: Project
    user_id: int | None = None
    key_id: int | None = None
    run_id: int | None = None
    header: str = "authorization"  # where the credential came: "x-api-key" or "authorization"


def read_credential(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """Return (credential, header it came in): `x-api-key` if sent, else `Authorization: Bearer`; None if neither."""
    api_key = (headers.get("x-api-key") or "").strip()
    if api_key:
        return api_key, "x-api-key"
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "authorization"
    return None


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    """Return the credential alone (see `read_credential`)."""
    found = read_credential(headers)
    return found[0] if found else None


async def authenticate(headers: Mapping[str, str], product: ProductConfig) -> Caller:
    """Check the request's credential for `product` and attribute the call to one project.

    `headers` are the request's headers with lower-case names. A server token is verified
    here (no database); its project and a personal key's answer come from a short-lived
    in-process cache (`CACHE_SECONDS`), else from one trip to the auth thread pool.
    """
    found = read_credential(headers)
    if found is None:
        raise Unauthenticated(
            "No credential: send a personal API key (phx_...) or a server token (phs_...) as `x-api-key` "
            "or `Authorization: Bearer`."
        )
    credential, header = found
    requested = _requested_project_id(headers)
    if credential.startswith(SERVER_TOKEN_PREFIX):
        try:
            token = verify_server_token(credential, product.name)
        except InvalidServerToken as exc:
            raise Unauthenticated(str(exc), code="invalid_server_token") from None
        if requested is not None and requested != token.project_id:
            raise NotFound(f"Project {requested} not found.", code="project_not_found")
        project = _cache.get(("project", token.project_id))
        if project is None:
            project = await run_auth(_token_project, token.project_id)
            _cache.put(("project", token.project_id), project)
        return Caller(kind="server_token", credential=credential, project=project, run_id=token.run_id, header=header)
    if credential.startswith(PERSONAL_API_KEY_PREFIX):
        cache_key = ("key", hashlib.sha256(credential.encode()).hexdigest(), product.name, requested)
        caller = _cache.get(cache_key)
        if caller is None:
            caller = await run_auth(_personal_key_caller, credential, product, requested)
            _cache.put(cache_key, caller)
        return replace(caller, header=header)
    raise Unauthenticated("Invalid credential: expected a personal API key (phx_...) or a server token (phs_...).")


class _TTLCache:
    """Answers that passed every check, kept `CACHE_SECONDS` (used from the event loop's thread only).

    Only successes are kept: a refused credential is looked up again every time, so a key
    created a moment ago works at once. The price is that a deleted key, a deactivated
    user or a removed membership still works for up to `CACHE_SECONDS` in each process.
    """

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()

    def get(self, key: tuple) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: tuple, value: Any) -> None:
        self._entries[key] = (time.monotonic() + self.seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


CACHE_SECONDS = 10.0
_cache = _TTLCache(CACHE_SECONDS)


def forget_cached_callers() -> None:
    """Drop every cached answer (tests do, between tests; an operator may after revoking a key)."""
    _cache.clear()


def _token_project(project_id: int) -> Project:
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is None:  # deleted since the token was minted
        raise Unauthenticated("The server token's project no longer exists.", code="invalid_server_token")
    return project


def _requested_project_id(headers: Mapping[str, str]) -> int | None:
    raw = (headers.get(PROJECT_HEADER) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        return NO_SUCH_PROJECT  # a 404 like any project not the caller's, once the credential has been judged
    return int(raw)


def _personal_key_caller(credential: str, product: ProductConfig, requested: int | None) -> Caller:
    key = PersonalAPIKey.objects.find_by_value(credential)
    if key is None or not key.user.is_active:
        raise Unauthenticated("Invalid personal API key.")
    if not scopes_grant(key.scopes, REQUIRED_SCOPE):
        raise PermissionDenied(f"This API key is missing the required scope '{REQUIRED_SCOPE}'.", code="missing_scope")
    if not product.allows_personal_api_keys_at_gateway():
        raise PermissionDenied(
            f"Product {product.name} accepts only server-minted credentials, not a personal API key.",
            code="server_credential_required",
        )
    project = _key_project(key, requested)
    key.mark_used()
    project.organization  # noqa: B018 (loaded here, in the pool's thread, not later on the event loop)
    return Caller(kind="personal_api_key", credential=credential, project=project, user_id=key.user_id, key_id=key.pk)


def _key_project(key: PersonalAPIKey, requested: int | None) -> Project:
    """The one project a call with `key` is for (see the module docstring for the order)."""
    if requested is None:
        scoped = list(key.scoped_projects.values_list("pk", flat=True)[:2])
        if len(scoped) == 1:
            requested = scoped[0]
    if requested is not None:
        project = get_visible_project(key.user, requested, key)
        if project is None:
            raise NotFound(f"Project {requested} not found.", code="project_not_found")
        return project
    candidates = list(visible_projects(key.user, key).order_by("pk")[:2])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise NotFound("This key reaches no project.", code="project_not_found")
    raise BadRequest(
        "This key reaches more than one project: send the header X-Project-Id with the project to bill.",
        code="project_required",
    )
