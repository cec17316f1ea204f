"""DRF permission: personal API keys must carry one of the view's scopes."""
from __future__ import annotations

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from .api_keys import scopes_grant
from .models import PersonalAPIKey
from .server_tokens import ServerToken


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"


class APIScopePermission(permissions.BasePermission):
    """Session users pass (membership is checked by the project lookup); keys need a scope.

    A view lists `required_scopes`; a key passes if it grants any of them. A server token
    passes only views that set `accepts_server_tokens` (the quota endpoint, which the LLM
    gateway asks with the token its caller presented).
    """

    def has_permission(self, request: Request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        key = request.auth
        if isinstance(key, ServerToken):
            if getattr(view, "accepts_server_tokens", False):
                return True
            raise exceptions.PermissionDenied("Server tokens cannot be used on this endpoint.")
        if not isinstance(key, PersonalAPIKey):
            return True
        required: list[str] = list(getattr(view, "required_scopes", []))
        if any(scopes_grant(key.scopes, scope) for scope in required):
            return True
        raise MissingScope(
            f"This API key is missing the required scope '{required[0]}'"
            + (f" (or one of: {', '.join(required[1:])})." if len(required) > 1 else ".")
        )
