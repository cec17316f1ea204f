"""The accounts product's public module: the only one other products and `temporal/` import.

Organizations, projects (their `api_token` keys the Redis quota state), memberships,
personal API keys, and the one answer to "which projects may this caller see".

Accounts imports no other product. Another product that adds to an accounts admin page
subclasses the admin class from here (e.g. `ProjectAdmin`), then unregisters and
re-registers the model with its subclass.
"""
from __future__ import annotations

from typing import Any

from .access import get_visible_project, member_organizations, visible_projects
from .api_keys import PERSONAL_API_KEY_PREFIX, scopes_grant
from .api import ProjectScopedAPIView
from .models import Organization, OrganizationMembership, PersonalAPIKey, Project
from .server_tokens import SERVER_TOKEN_PREFIX, InvalidServerToken, ServerToken, read_server_token, sign_server_token

__all__ = [
    "InvalidServerToken",
    "PERSONAL_API_KEY_PREFIX",
    "SERVER_TOKEN_PREFIX",
    "ServerToken",
    "Organization",
    "OrganizationMembership",
    "PersonalAPIKey",
    "Project",
    "ProjectAdmin",
    "ProjectScopedAPIView",
    "get_visible_project",
    "member_organizations",
    "read_server_token",
    "scopes_grant",
    "sign_server_token",
    "visible_projects",
]


def __getattr__(name: str) -> Any:
    # Admin classes load with the admin (autodiscover), not with this module: models of
    # other products import the facade while apps are still loading.
    if name == "ProjectAdmin":
        from .admin import ProjectAdmin

        return ProjectAdmin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
