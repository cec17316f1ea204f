"""Billing records kept in the database: the audit log of quota-state changes."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .quota_limiting import QuotaResource

RESOURCE_CHOICES = [(r.value, r.value) for r in QuotaResource]


class QuotaLimitChange(models.Model):
    """One change to a project's quota state, by an operator or a job. Never edited."""

    class State(models.TextChoices):
        LIMITED = "limited", "limited"
        SUSPENDED = "suspended", "suspended (grace period)"

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="quota_limit_changes")
    resource = models.CharField(max_length=64, choices=RESOURCE_CHOICES)
    state = models.CharField(max_length=16, choices=State.choices, default=State.LIMITED)
    old_limited_until = models.DateTimeField(null=True, blank=True)
    new_limited_until = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(
        max_length=100, blank=True, help_text="Who made the change when it was not a user: a command or a job."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "resource", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.project} {self.resource}: {self.old_limited_until} -> {self.new_limited_until}"

    @property
    def who(self) -> str:
        return str(self.actor) if self.actor else self.actor_label or "unknown"
