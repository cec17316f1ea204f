"""DRF authentication by personal API key or server token (`Authorization: Bearer` or `X-API-Key`)."""
from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .api_keys import PERSONAL_API_KEY_PREFIX
from .models import PersonalAPIKey
from .server_tokens import SERVER_TOKEN_PREFIX, InvalidServerToken, ServerToken, ServerTokenPrincipal, read_server_token


def key_from_request(request: Request) -> str | None:
    """Return the raw key the caller sent, or None when it sent no key at all."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    api_key = request.META.get("HTTP_X_API_KEY", "")
    return api_key.strip() or None


class PersonalAPIKeyAuthentication(authentication.BaseAuthentication):
    """A present but unknown key is a 401, never a silent fall-through to anonymous."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, PersonalAPIKey] | None:
        value = key_from_request(request)
        if value is None or value.startswith(SERVER_TOKEN_PREFIX):
            return None  # no credential, or a server token (ServerTokenAuthentication's)
        if not value.startswith(PERSONAL_API_KEY_PREFIX):
            raise exceptions.AuthenticationFailed("Invalid personal API key.")
        key = PersonalAPIKey.objects.find_by_value(value)
        if key is None or not key.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid personal API key.")
        key.mark_used()
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 when credentials are missing.
        return self.keyword


class ServerTokenAuthentication(authentication.BaseAuthentication):
    """A server token (`phs_...`, minted by our own server for one project) as the credential.

    Only views that say `accepts_server_tokens = True` let one through (APIScopePermission),
    and only to the project it names (ProjectScopedAPIView.get_project). A forged or expired
    token is a 401, never a fall-through to anonymous.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ServerTokenPrincipal, ServerToken] | None:
        value = key_from_request(request)
        if value is None or not value.startswith(SERVER_TOKEN_PREFIX):
            return None
        try:
            token = read_server_token(value)
        except InvalidServerToken as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return ServerTokenPrincipal(token), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
