"""Response shapes of the quota endpoint (also its OpenAPI schema)."""
from __future__ import annotations

from rest_framework import serializers

from .quota_limiting import QuotaResource, ResourceQuotaStatus


class ResourceQuotaSerializer(serializers.Serializer):
    limited = serializers.BooleanField(help_text="True while the project is limited for this resource.")
    limited_until = serializers.DateTimeField(allow_null=True, help_text="When the limit ends (ISO 8601), or null.")
    suspended_until = serializers.DateTimeField(
        allow_null=True, help_text="When the grace-period suspension ends (ISO 8601), or null."
    )


# One field per resource, so the schema lists every one of them.
QuotaLimitsByResourceSerializer = type(
    "QuotaLimitsByResourceSerializer",
    (serializers.Serializer,),
    {resource.value: ResourceQuotaSerializer() for resource in QuotaResource},
)


class QuotaLimitsResponseSerializer(serializers.Serializer):
    limited = QuotaLimitsByResourceSerializer()


def quota_limits_payload(status: dict[QuotaResource, ResourceQuotaStatus]) -> dict:
    return {
        "limited": {
            resource.value: {
                "limited": entry.limited,
                "limited_until": entry.limited_until.isoformat() if entry.limited_until else None,
                "suspended_until": entry.suspended_until.isoformat() if entry.suspended_until else None,
            }
            for resource, entry in status.items()
        }
    }
