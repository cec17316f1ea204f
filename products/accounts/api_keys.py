"""Personal API key material: generation, hashing and scopes.

Keys are shown once and stored only as a SHA-256 hash. A key carries 256 bits of
randomness, so a fast unsalted hash is as safe as a slow salted one (the same
reasoning GitHub and PostHog use) and lets authentication find a key with one
indexed lookup.
"""
from __future__ import annotations

import hashlib
import secrets

PERSONAL_API_KEY_PREFIX = "phx_"
PROJECT_API_TOKEN_PREFIX = "phc_"

# Scopes are "<object>:<action>"; a write scope implies the read scope of the
# same object, and "*" grants everything. Add new objects here.
SCOPE_OBJECTS = ("project", "llm_gateway", "task", "usage")
SCOPE_ACTIONS = ("read", "write")
ALL_SCOPES = ("*",) + tuple(f"{obj}:{action}" for obj in SCOPE_OBJECTS for action in SCOPE_ACTIONS)


def generate_personal_api_key() -> str:
    return PERSONAL_API_KEY_PREFIX + secrets.token_urlsafe(32)


def generate_project_api_token() -> str:
    return PROJECT_API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_key_value(value: str) -> str:
    return "sha256$" + hashlib.sha256(value.encode()).hexdigest()


def mask_key_value(value: str) -> str:
    """Keep enough of a key for a person to recognise it in a list, never enough to use it."""
    return f"{value[:4]}...{value[-4:]}"


def validate_scopes(scopes: list[str]) -> list[str]:
    """Return the unknown scopes in `scopes` (empty when all are valid)."""
    return [scope for scope in scopes if scope not in ALL_SCOPES]


def scopes_grant(scopes: list[str], required: str) -> bool:
    """Say whether a key with `scopes` may do `required` ("object:action")."""
    if "*" in scopes or required in scopes:
        return True
    obj, _, action = required.partition(":")
    return action == "read" and f"{obj}:write" in scopes
