"""Shared REST pieces for project-scoped endpoints."""
from __future__ import annotations

from django.http import Http404
from rest_framework.views import APIView

from .access import get_visible_project
from .models import Project
from .permissions import APIScopePermission
from .server_tokens import ServerToken


class ProjectScopedAPIView(APIView):
    """Base for `/api/projects/{project_id}/...`: 401 without credentials, 403 without
    the scope, 404 for a project that is missing or not the caller's (never saying which)."""

    permission_classes = [APIScopePermission]
    required_scopes: list[str] = []
    accepts_server_tokens = False  # see APIScopePermission

    def get_project(self) -> Project:
        auth = self.request.auth
        if isinstance(auth, ServerToken):  # our own server, for the one project the token names
            project = Project.objects.select_related("organization").filter(pk=self.kwargs["project_id"]).first()
            if project is None or project.pk != auth.project_id:
                raise Http404("Project not found.")
            return project
        project = get_visible_project(self.request.user, self.kwargs["project_id"], self.request.auth)
        if project is None:
            raise Http404("Project not found.")
        return project
