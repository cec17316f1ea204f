"""Request and response shapes of the usage endpoint, for its OpenAPI schema.

Validation itself is done by `products.billing.usage.check_usage_events`, which
reports every bad event of a batch at once; these serializers only document.
"""
from __future__ import annotations

from rest_framework import serializers

from .products import known_product_names

UsageEventPropertiesSerializer = type(
    "UsageEventPropertiesSerializer",
    (serializers.Serializer,),
    {
        "$ai_product": serializers.ChoiceField(
            choices=known_product_names(), help_text="The product the call was made for (aliases accepted)."
        ),
        "$ai_model": serializers.CharField(required=False, max_length=200),
        "$ai_provider": serializers.CharField(required=False, max_length=100),
        "$ai_input_tokens": serializers.IntegerField(required=False, min_value=0),
        "$ai_output_tokens": serializers.IntegerField(required=False, min_value=0),
        "$ai_total_cost_usd": serializers.DecimalField(
            max_digits=16, decimal_places=9, min_value=0, coerce_to_string=False, help_text="Cost of the call in USD."
        ),
        "$ai_is_error": serializers.BooleanField(required=False),
        "$ai_billable": serializers.BooleanField(
            required=False, help_text="Ignored: the product registry decides whether usage is billable."
        ),
    },
)


class UsageEventSerializer(serializers.Serializer):
    uuid = serializers.UUIDField(help_text="The event's id; resending the same uuid records it once.")
    event = serializers.ChoiceField(choices=["$ai_generation"])
    timestamp = serializers.DateTimeField(help_text="At most 35 days old and at most 5 minutes in the future.")
    properties = UsageEventPropertiesSerializer()


class UsageEventBatchSerializer(serializers.Serializer):
    batch = UsageEventSerializer(many=True, min_length=1, max_length=1000)


class UsageEventsRecordedSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="Distinct events in the request.")
    stored = serializers.IntegerField(help_text="Events recorded by this request.")
    duplicates = serializers.IntegerField(help_text="Events already recorded (same uuid); not counted again.")


class UsageEventErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the batch (0 for a single event).")
    uuid = serializers.JSONField(allow_null=True, help_text="The uuid the event was sent with, if any.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name -> what is wrong with it.",
    )


class UsageEventsRejectedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = UsageEventErrorSerializer(many=True, required=False, help_text="One entry per invalid event.")
