"""Billing records kept in the database: the audit log of quota-state changes."""
from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .periods import check_allowance, period_containing
from .quota_limiting import STATE_LIMITED, STATE_SUSPENDED, QuotaResource

RESOURCE_CHOICES = [(r.value, r.value) for r in QuotaResource]
AI_CREDIT_UNIT = "AI credits for ai_credits (1 credit = $0.01 of model cost, markup included)"


class QuotaLimitChange(models.Model):
    """One change to a project's quota state, by an operator or a job. Never edited."""

    class State(models.TextChoices):
        LIMITED = STATE_LIMITED, "limited"
        SUSPENDED = STATE_SUSPENDED, "suspended (grace period)"

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
        if self.new_limited_until is None:
            was = f" (was until {_utc(self.old_limited_until)})" if self.old_limited_until else ""
            return f"{self.project} {self.resource}: {self.action}{was}"
        return f"{self.project} {self.resource}: {self.action} until {_utc(self.new_limited_until)}"

    @property
    def action(self) -> str:
        """What the change did: "limited", "lifted", "suspended" or "suspension lifted".

        A row with no new limited-until time is a lift (by an operator's clear or by the
        recomputation); the state says which of the two sets it was in.
        """
        if self.state == self.State.SUSPENDED:
            return "suspended" if self.new_limited_until else "suspension lifted"
        return "limited" if self.new_limited_until else "lifted"

    @property
    def who(self) -> str:
        return str(self.actor) if self.actor else self.actor_label or "unknown"


# --- Plans, usage and alerts (issue 4) ---------------------------------------------------
# Plans say what an organization may use per billing period; usage events say what it
# did use; the recomputation (recompute.py) compares the two and writes the Redis state.


class BillingPlan(models.Model):
    """An organization's billing period and, through `allowances`, what it may use in it.

    Periods are `period_months` long and counted from `period_anchor` (rolling monthly by
    default). `period_start`/`period_end` hold the current period; when it ends the
    recomputation moves them on to the period containing now. An organization without a
    plan is unlimited, with monthly periods counted from its creation.
    """

    organization = models.OneToOneField("accounts.Organization", on_delete=models.CASCADE, related_name="billing_plan")
    name = models.CharField(max_length=100, default="default", help_text="What the plan is called, e.g. Team.")
    period_anchor = models.DateTimeField(
        null=True, blank=True, help_text="Periods are counted from here. Empty: the organization's creation time."
    )
    period_months = models.PositiveSmallIntegerField(default=1, help_text="Length of a billing period in months.")
    period_start = models.DateTimeField(null=True, blank=True, help_text="Empty: computed from the anchor.")
    period_end = models.DateTimeField(null=True, blank=True, help_text="Empty: computed from the anchor.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization__name", "id"]
        verbose_name = "billing plan"

    def __str__(self) -> str:
        # The admin titles this "Change billing plan"; repeating "plan" here read as "plan plan".
        return f"{self.name} ({self.organization})"

    def clean(self) -> None:
        if self.period_months < 1:
            raise ValidationError({"period_months": "A billing period is at least one month."})
        if (self.period_start is None) != (self.period_end is None):
            raise ValidationError("Set both period start and period end, or neither.")
        if self.period_start and self.period_end and self.period_end <= self.period_start:
            raise ValidationError({"period_end": "The period must end after it starts."})

    def save(self, *args, **kwargs) -> None:
        if self.period_start is None or self.period_end is None:
            anchor = self.period_anchor or self.organization.created_at
            self.period_start, self.period_end = period_containing(anchor, self.period_months, timezone.now())
        super().save(*args, **kwargs)


class ResourceAllowance(models.Model):
    """How much of one resource a plan includes per period, and how limits are applied.

    `allowance` is in the resource's unit (credits for `ai_credits`); empty means
    unlimited. The organization is limited once usage reaches allowance + overage
    buffer. With a grace period it is first suspended for that many days; `ai_credits`
    has none (enforced here and by the recomputation).
    """

    plan = models.ForeignKey(BillingPlan, on_delete=models.CASCADE, related_name="allowances")
    resource = models.CharField(max_length=64, choices=RESOURCE_CHOICES)
    allowance = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=f"Per billing period, in the resource's unit: {AI_CREDIT_UNIT}; billable events for "
        "llm_events. Empty = unlimited.",
    )
    overage_buffer = models.BigIntegerField(
        default=0, help_text="Extra usage tolerated before limiting, in the same unit (AI credits for ai_credits)."
    )
    grace_period_days = models.PositiveSmallIntegerField(default=0, help_text="Not allowed for ai_credits.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "resource"], name="unique_plan_resource_allowance")]
        ordering = ["plan_id", "resource"]
        verbose_name = "allowance"

    def __str__(self) -> str:
        return f"{self.resource}: {'unlimited' if self.allowance is None else self.allowance}"

    def clean(self) -> None:
        try:
            check_allowance(self.resource, self.allowance, self.overage_buffer, self.grace_period_days)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class QuotaOverride(models.Model):
    """An operator's decision that beats the figures: never limit, or always limit.

    It covers every project of the organization, or with `project` just that one. A limit
    set by hand (`manage.py quota_limits set`, the admin's "Limit AI credits until …") is
    recorded as the project's "always limit" until its time, so the recomputation keeps
    it instead of lifting it minutes later; clearing the limit removes that override.
    With `until` an override applies until then (an "always limit" then limits until that
    time); without, until it is removed (an "always limit" limits until the period ends).
    """

    class Mode(models.TextChoices):
        NEVER_LIMIT = "never_limit", "never limit"
        ALWAYS_LIMIT = "always_limit", "always limit"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="quota_overrides")
    project = models.ForeignKey(
        "accounts.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="quota_overrides",
        help_text="Empty: every project of the organization.",
    )
    resource = models.CharField(max_length=64, choices=RESOURCE_CHOICES)
    mode = models.CharField(max_length=16, choices=Mode.choices)
    until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The override ends at this time (an 'always limit' limits until then). Empty: until removed.",
    )
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource"],
                condition=models.Q(project__isnull=True),
                name="unique_org_resource_override",
            ),
            models.UniqueConstraint(
                fields=["project", "resource"],
                condition=models.Q(project__isnull=False),
                name="unique_project_resource_override",
            ),
        ]
        ordering = ["organization_id", "resource"]

    def __str__(self) -> str:
        whom = f"{self.project}" if self.project_id else f"{self.organization}"
        until = f" until {_utc(self.until)}" if self.until else ""
        return f"{whom} {self.resource}: {self.get_mode_display()}{until}"

    def applies_at(self, now: datetime) -> bool:
        """Say whether the override is in force at `now` (an expired one is ignored)."""
        return self.until is None or self.until > now

    def clean(self) -> None:
        if self.project_id and self.organization_id and self.project.organization_id != self.organization_id:
            raise ValidationError({"project": "The project belongs to another organization."})


class UsageEvent(models.Model):
    """One recorded `$ai_generation`, with its credits worked out when it arrived.

    Credits are stored per event so the recomputation is a plain SUM. `organization`
    is copied from the project so that SUM needs no join. `(project, uuid)` is unique:
    a resent event is accepted and counted once.
    """

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="usage_events")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="usage_events", db_index=False
    )
    uuid = models.UUIDField()
    event = models.CharField(max_length=64, default="$ai_generation")
    timestamp = models.DateTimeField()
    product = models.CharField(max_length=64)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    credits = models.BigIntegerField(default=0)
    billable = models.BooleanField()
    is_error = models.BooleanField(default=False)
    properties = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "uuid"], name="unique_usage_event_per_project")]
        indexes = [
            # The recomputation's SUM: billable rows of an organization in a time range,
            # answered from the index alone (credits is included).
            models.Index(
                fields=["organization", "timestamp"],
                include=["credits"],
                condition=models.Q(billable=True),
                name="usage_billable_org_ts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.uuid} ({self.product}, {self.credits} credits)"


class UsageAlert(models.Model):
    """An alert already sent: one per organization, resource, period and threshold, ever."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="usage_alerts")
    resource = models.CharField(max_length=64, choices=RESOURCE_CHOICES, default="ai_credits")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the allowance.")
    usage = models.BigIntegerField()
    allowance = models.BigIntegerField()
    delivered_to = models.CharField(max_length=200, blank=True, help_text="Slack channel, or 'log'.")
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource", "period_start", "threshold"], name="unique_usage_alert"
            )
        ]
        ordering = ["-sent_at", "-id"]

    def __str__(self) -> str:
        return f"{self.organization} {self.resource} {self.threshold}% ({self.period_start:%Y-%m-%d})"


def _utc(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC"
