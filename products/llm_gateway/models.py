"""The gateway's own table: operator overrides of the model price table."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class PriceOverride(models.Model):
    """What one model (or every model with a name prefix) costs, replacing genai-prices' figure.

    Operators set these when a provider's price changed before the package caught up, for
    negotiated prices, or for models the package does not know. An exact name wins over
    a prefix; among prefixes, the longest wins.
    """

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    model = models.CharField(max_length=200, help_text="A model name, or a prefix when 'is prefix' is ticked.")
    is_prefix = models.BooleanField(default=False, help_text="Apply to every model whose name starts with this.")
    input_usd_per_mtok = models.DecimalField("input, USD per million tokens", max_digits=12, decimal_places=6)
    output_usd_per_mtok = models.DecimalField("output, USD per million tokens", max_digits=12, decimal_places=6)
    cache_read_usd_per_mtok = models.DecimalField(
        "cache read, USD per million tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Empty: cache reads cost what input does.",
    )
    note = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model", "is_prefix"], name="unique_price_override"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.model}{'*' if self.is_prefix else ''}"

    def save(self, *args, **kwargs) -> None:
        self.updated_at = timezone.now()
        super().save(*args, **kwargs)
