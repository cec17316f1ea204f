"""OpenAPI description of personal API key authentication (loaded by the app config)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PersonalAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "products.accounts.authentication.PersonalAPIKeyAuthentication"
    name = "PersonalAPIKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API key (`phx_...`) as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
        }


class ServerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "products.accounts.authentication.ServerTokenAuthentication"
    name = "ServerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A server token (`phs_...`) minted by this service for one project; accepted by the "
            "quota endpoint only (the LLM gateway presents its caller's token there).",
        }
