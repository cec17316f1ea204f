"""Shared REST pieces for project-scoped endpoints."""
from __future__ import annotations

from django.http import Http404
from rest_framework.views import APIView

from .access import get_visible_project
from .models import Project
from .permissions import APIScopePermission


class ProjectScopedAPIView(APIView):
    """Base for `/api/projects/{project_id}/...`: 401 without credentials, 403 without
    the scope, 404 for a project that is missing or not the caller's (never saying which)."""

    permission_classes = [APIScopePermission]
    required_scopes: list[str] = []

    def get_project(self) -> Project:
        project = get_visible_project(self.request.user, self.kwargs["project_id"], self.request.auth)
        if project is None:
            raise Http404("Project not found.")
        return project
