"""Which projects a caller may see. The only module other products use for that question."""
from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from .models import PersonalAPIKey, Project


def visible_projects(user, key: PersonalAPIKey | None = None):
    """Projects `user` belongs to, narrowed to the key's organization and project scoping."""
    qs = Project.objects.filter(
        organization__memberships__user=user,
    ).select_related("organization")
    if key is not None:
        org_links = PersonalAPIKey.scoped_organizations.through.objects.filter(personalapikey_id=key.pk)
        project_links = PersonalAPIKey.scoped_projects.through.objects.filter(personalapikey_id=key.pk)
        qs = qs.filter(
            ~Exists(org_links) | Exists(org_links.filter(organization_id=OuterRef("organization_id")))
        ).filter(~Exists(project_links) | Exists(project_links.filter(project_id=OuterRef("pk"))))
    return qs


def get_visible_project(user, project_id: int, key: PersonalAPIKey | None = None) -> Project | None:
    """Return the project if the caller may see it, else None (callers answer 404 either way)."""
    if not user or not user.is_authenticated:
        return None
    return visible_projects(user, key).filter(pk=project_id).first()


def member_organizations(user):
    """Organizations `user` is a member of, by name; none for an anonymous user."""
    from .models import Organization

    if not user or not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user).order_by("name", "id")
