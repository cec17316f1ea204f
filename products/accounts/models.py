"""Organizations, projects (teams), memberships and personal API keys."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from .api_keys import (
    generate_personal_api_key,
    generate_project_api_token,
    hash_key_value,
    mask_key_value,
)


class Organization(models.Model):
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    """A project (PostHog calls it a team); its `api_token` keys the Redis quota state."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    api_token = models.CharField(
        max_length=200, unique=True, default=generate_project_api_token, editable=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization__name", "name", "id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class OrganizationMembership(models.Model):
    class Level(models.IntegerChoices):
        MEMBER = 1, "member"
        ADMIN = 8, "admin"
        OWNER = 15, "owner"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organization_memberships"
    )
    level = models.PositiveSmallIntegerField(choices=Level.choices, default=Level.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="unique_organization_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.get_level_display()})"


class PersonalAPIKeyQuerySet(models.QuerySet):
    def find_by_value(self, value: str) -> "PersonalAPIKey | None":
        return self.select_related("user").filter(secure_value=hash_key_value(value)).first()


class PersonalAPIKey(models.Model):
    """A user's key for the REST API; the raw value exists only in `create_key`'s return value."""

    LAST_USED_RESOLUTION = timedelta(minutes=1)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_api_keys")
    label = models.CharField(max_length=100)
    secure_value = models.CharField(max_length=100, unique=True, editable=False)
    mask_value = models.CharField(max_length=20, editable=False)
    scopes = models.JSONField(default=list, help_text='e.g. ["project:read"] or ["*"]')
    scoped_organizations = models.ManyToManyField(
        Organization, blank=True, help_text="If any are chosen, the key works only for these organizations."
    )
    scoped_projects = models.ManyToManyField(
        Project, blank=True, help_text="If any are chosen, the key works only for these projects."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = PersonalAPIKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "personal API key"

    def __str__(self) -> str:
        return f"{self.label} ({self.mask_value})"

    def set_new_value(self) -> str:
        """Give this (unsaved or existing) key a fresh value and return it; it is shown once."""
        value = generate_personal_api_key()
        self.secure_value = hash_key_value(value)
        self.mask_value = mask_key_value(value)
        return value

    @classmethod
    def create_key(cls, *, user, label: str, scopes: list[str]) -> tuple["PersonalAPIKey", str]:
        key = cls(user=user, label=label, scopes=list(scopes))
        value = key.set_new_value()
        key.save()
        return key, value

    def mark_used(self) -> None:
        """Record use at most once a minute, with one conditional UPDATE and no read."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.LAST_USED_RESOLUTION:
            return
        cutoff = now - self.LAST_USED_RESOLUTION
        type(self).objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=cutoff)
        ).update(last_used_at=now)
        self.last_used_at = now
