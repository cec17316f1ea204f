"""The accounts product's public module: the only one other products and `temporal/` import.

Organizations, projects (their `api_token` keys the Redis quota state), memberships,
personal API keys, and the one answer to "which projects may this caller see".
"""
from __future__ import annotations

from .access import get_visible_project, visible_projects
from .api import ProjectScopedAPIView
from .models import Organization, OrganizationMembership, PersonalAPIKey, Project

__all__ = [
    "Organization",
    "OrganizationMembership",
    "PersonalAPIKey",
    "Project",
    "ProjectScopedAPIView",
    "get_visible_project",
    "visible_projects",
]
