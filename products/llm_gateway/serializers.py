"""The usage endpoint's request and response: validation and OpenAPI schema in one place.

`UsageEventBatchSerializer` accepts one event, a bare list, or `{"batch": [...]}`
and checks every event of it, so that a 400 lists every bad event at once
(`rejection_body` gives the response's shape). The product registry resolves the
product (aliases included) and sets `$ai_billable`, whatever the client sent; the
events come out as billing's `CheckedUsageEvent`s, ready for `record_usage_events`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, DecimalException
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from products.billing.facade import CheckedUsageEvent

from .products import ProductConfig, UnknownProduct, known_product_names, resolve_product
from .usage import tag_usage_properties

MAX_BATCH_SIZE = 1000
MAX_EVENT_AGE = timedelta(days=35)
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_TOKENS = 2**62
# Per event; far above any real call, far below the column's limit. Checked after rounding
# to `COST_PLACES`, so what is stored is what was checked.
MAX_COST_USD = Decimal("1000000")
COST_PLACES = Decimal("0.000000001")
ACCEPTED_EVENTS = ("$ai_generation",)
INVALID_CODE = "invalid_usage_events"


# --- Fields: JSON types as sent, no coercion -------------------------------------------------


class _NullMeansDefault:
    """A JSON null reads as the field's default (0, false, ""), as clients have always sent it."""

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None and self.default is not empty:
            return True, self.get_default()
        return super().validate_empty_values(data)


class StrictCharField(_NullMeansDefault, serializers.CharField):
    """A JSON string; a number or a boolean is an error, not text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(_NullMeansDefault, serializers.IntegerField):
    """A JSON integer: `1.5`, `"5"` and `true` are errors."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(_NullMeansDefault, serializers.BooleanField):
    """JSON `true` or `false`: `"no"` and `0` are errors."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class CostUSDField(serializers.DecimalField):
    """A non-negative cost in USD below `MAX_COST_USD`, rounded half up to 9 decimal places.

    The range is checked after rounding: 999999.9999999999 rounds to 1,000,000 and is
    refused, rather than stored as a value the check never saw.
    """

    default_error_messages = {
        "invalid": f"A non-negative number below {MAX_COST_USD} is required.",
        "range": f"Must be at least 0 and below {MAX_COST_USD} once rounded to 9 decimal places.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_digits=16,
            decimal_places=9,
            coerce_to_string=False,
            min_value=Decimal(0),
            max_value=MAX_COST_USD - COST_PLACES,
            **kwargs,
        )
        self.validators = []  # the range is checked below, on the rounded value, with one message

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, (int, float, str)):
            self.fail("invalid")
        if isinstance(data, float) and not math.isfinite(data):
            self.fail("invalid")
        if isinstance(data, str) and len(data) > self.MAX_STRING_LENGTH:
            self.fail("invalid")
        try:
            value = Decimal(str(data).strip())
            if not value.is_finite():
                self.fail("invalid")
            rounded = value.quantize(COST_PLACES, rounding=ROUND_HALF_UP)
        except DecimalException:
            self.fail("invalid")
        if value < 0 or rounded >= MAX_COST_USD:
            self.fail("range")
        return rounded


def _product_choices() -> list[tuple[str, str]]:
    """Every accepted product name with what it bills, for the schema's enum description."""
    choices = []
    for name in known_product_names():
        product = resolve_product(name)
        billing = "billable: counts against AI credits" if product.billable else "not billable: never counts against AI credits"
        alias = f" (retired name of {product.name})" if name != product.name else ""
        choices.append((name, f"{billing}{alias}. {product.description}".strip()))
    return choices


def _product_schema() -> dict[str, Any]:
    """One `oneOf` entry per accepted name, each saying whether it is billable.

    Written as single-value enums under `oneOf` rather than one `enum`: spectacular would
    turn a plain enum into a component named after the field, and OpenAPI component
    names may not contain "$".
    """
    choices = _product_choices()
    return {
        "type": "string",
        "description": "The product the call was made for (aliases accepted). Whether its usage is billable is "
        "decided by the product registry, never by the client:\n\n"
        + "\n".join(f"* `{name}` - {label}" for name, label in choices),
        "oneOf": [{"type": "string", "enum": [name], "description": label} for name, label in choices],
    }


@extend_schema_field(_product_schema())
class ProductField(serializers.ChoiceField):
    """A product name or alias, resolved by the registry to its `ProductConfig`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=_product_choices(), **kwargs)

    def to_internal_value(self, data: Any) -> ProductConfig:
        try:
            return resolve_product(data)
        except UnknownProduct as exc:
            raise serializers.ValidationError(str(exc), code="unknown_product") from None


# --- One event ----------------------------------------------------------------------------------


_PROPERTY_FIELDS: dict[str, serializers.Field] = {
    "$ai_product": ProductField(),  # its description (what each name bills) is in `_product_schema`
    "$ai_model": StrictCharField(required=False, default="", allow_blank=True, allow_null=True, max_length=200),
    "$ai_provider": StrictCharField(required=False, default="", allow_blank=True, allow_null=True, max_length=100),
    "$ai_input_tokens": StrictIntegerField(required=False, default=0, allow_null=True, min_value=0, max_value=MAX_TOKENS - 1),
    "$ai_output_tokens": StrictIntegerField(required=False, default=0, allow_null=True, min_value=0, max_value=MAX_TOKENS - 1),
    "$ai_total_cost_usd": CostUSDField(help_text="Cost of the call in USD; credits = round(cost x 100 x (1 + markup))."),
    "$ai_is_error": StrictBooleanField(required=False, default=False, allow_null=True),
    "$ai_billable": serializers.BooleanField(
        required=False, help_text="Ignored: the product registry decides whether usage is billable."
    ),
}


class _PropertiesBase(serializers.Serializer):
    """The `$ai_*` properties; any other property is kept as sent (it must be storable JSON)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        validated = super().to_internal_value(data)
        try:
            json.dumps(data, allow_nan=False)
        except ValueError:
            raise serializers.ValidationError(
                {"non_field_errors": ["Numbers must be finite: NaN and Infinity cannot be stored."]}, code="invalid"
            ) from None
        # What is stored: everything sent, with the registry's product (the alias sent kept
        # as `$ai_product_requested`) and billable flag applied last, so nothing can spoof them.
        _, validated["stored_properties"] = tag_usage_properties(dict(data))
        return validated

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        product: ProductConfig = attrs["$ai_product"]
        errors: dict[str, list[str]] = {}
        # An event that names no model is kept (usage recorded before models were named); one
        # that names a model the product may not use is refused.
        if attrs["$ai_model"] and not product.allows_model(attrs["$ai_model"]):
            errors["$ai_model"] = [f"Model {attrs['$ai_model']!r} is not allowed for product {product.name}."]
        if self.context.get("via_personal_api_key") and not product.allow_personal_api_keys:
            errors["$ai_product"] = [f"Product {product.name} does not accept usage sent with a personal API key."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


# Field names start with "$", so the class is built with type() rather than a class body.
UsageEventPropertiesSerializer = type("UsageEventPropertiesSerializer", (_PropertiesBase,), dict(_PROPERTY_FIELDS))


class UsageEventSerializer(serializers.Serializer):
    """One `$ai_generation` event."""

    default_error_messages = {"invalid": "An event must be a JSON object, not {datatype}."}

    uuid = serializers.UUIDField(help_text="The event's id; resending the same uuid records it once.")
    event = serializers.ChoiceField(choices=ACCEPTED_EVENTS)
    timestamp = serializers.DateTimeField(
        help_text="ISO 8601 (no zone means UTC). At most 35 days old and at most 5 minutes in the future."
    )
    properties = UsageEventPropertiesSerializer()

    def validate_timestamp(self, value: datetime) -> datetime:
        now = self.context.get("now") or timezone.now()
        if value < now - MAX_EVENT_AGE:
            raise serializers.ValidationError("More than 35 days old.")
        if value > now + MAX_CLOCK_SKEW:
            raise serializers.ValidationError("More than 5 minutes in the future.")
        return value


def checked_event(validated: dict[str, Any]) -> CheckedUsageEvent:
    """Return billing's event for one validated event."""
    props = validated["properties"]
    product: ProductConfig = props["$ai_product"]
    return CheckedUsageEvent(
        uuid=validated["uuid"],
        event=validated["event"],
        timestamp=validated["timestamp"],
        product=product.name,
        billable=product.billable,
        cost_usd=props["$ai_total_cost_usd"],
        model=props["$ai_model"],
        provider=props["$ai_provider"],
        input_tokens=props["$ai_input_tokens"],
        output_tokens=props["$ai_output_tokens"],
        is_error=props["$ai_is_error"],
        properties=props["stored_properties"],
    )


# --- The request ----------------------------------------------------------------------------------


class UsageEventBatchSerializer(serializers.Serializer):
    """The body: one event object, a bare list of events, or `{"batch": [...]}` of 1 to 1,000.

    A uuid repeated in the batch is one event sent twice when the copies are identical,
    and an error (naming the uuid) when they differ: which one is meant is not ours to guess.
    """

    batch = UsageEventSerializer(many=True, min_length=1, max_length=MAX_BATCH_SIZE, help_text="1 to 1,000 events.")

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        return False, data  # null, a string, a number: each gets the sentence below

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping) and "batch" in data and "uuid" not in data:
            data = {"batch": data["batch"]}
        elif isinstance(data, Mapping):
            data = {"batch": [data]}
        elif isinstance(data, list):
            data = {"batch": data}
        else:
            self._fail('Send one event object, a list of events, or {"batch": [...]}.')
        events = data["batch"]
        if not isinstance(events, list):
            self._fail('"batch" must be a list of events.')
        if not events:
            self._fail("The batch is empty.")
        if len(events) > MAX_BATCH_SIZE:
            self._fail(f"A batch holds at most {MAX_BATCH_SIZE} events; this one has {len(events)}.")
        return super().to_internal_value(data)

    def validate_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first_seen: dict[Any, int] = {}
        errors: list[dict[str, Any]] = [{} for _ in events]
        for index, event in enumerate(events):
            first = first_seen.setdefault(event["uuid"], index)
            if first != index and _comparable(event) != _comparable(events[first]):
                errors[index] = {
                    "uuid": [
                        f"uuid {event['uuid']} was already sent at index {first} with different contents; "
                        "one uuid names one event."
                    ]
                }
        if any(errors):
            raise serializers.ValidationError(errors)
        return events

    def checked_events(self) -> list[CheckedUsageEvent]:
        """The validated events, in the order sent (repeats included), as billing's dataclass."""
        return [checked_event(event) for event in self.validated_data["batch"]]

    @staticmethod
    def _fail(message: str) -> None:
        raise serializers.ValidationError({"non_field_errors": [message]}, code="invalid")


def _comparable(event: dict[str, Any]) -> tuple:
    props = event["properties"]
    return (event["event"], event["timestamp"], json.dumps(props["stored_properties"], sort_keys=True, default=str))


def rejection_body(errors: Any, raw: Any) -> dict[str, Any]:
    """Return the 400 body for a refused request: a sentence, a code, and one entry per bad event.

    `errors` is `UsageEventBatchSerializer.errors`; `raw` the body as sent (for each
    bad event's uuid as the client wrote it).
    """
    batch_errors = errors.get("batch")
    if isinstance(batch_errors, Mapping) and all(isinstance(k, int) for k in batch_errors):
        per_event = sorted(batch_errors.items())  # DRF lists only the bad events, by index
    elif isinstance(batch_errors, list) and all(isinstance(e, Mapping) for e in batch_errors):
        per_event = list(enumerate(batch_errors))
    else:
        messages = [str(m) for m in _leaves(errors)]
        return {"detail": " ".join(messages) + " Nothing was recorded.", "code": INVALID_CODE, "errors": []}
    raw_events = _raw_events(raw)
    entries = []
    duplicate_uuids = []
    for index, event_errors in per_event:
        if not event_errors:
            continue
        raw_event = raw_events[index] if index < len(raw_events) else None
        sent_uuid = raw_event.get("uuid") if isinstance(raw_event, Mapping) else None
        flat = _flatten(event_errors)
        if any("already sent at index" in m for m in flat.get("uuid", [])):
            duplicate_uuids.append(str(sent_uuid))
        entries.append({"index": index, "uuid": sent_uuid, "errors": flat})
    noun = "event is" if len(entries) == 1 else "events are"
    detail = f"{len(entries)} {noun} invalid; nothing was recorded."
    if duplicate_uuids:
        detail += f" Sent twice with different contents: {', '.join(dict.fromkeys(duplicate_uuids))}."
    return {"detail": detail, "code": INVALID_CODE, "errors": entries}


def _raw_events(raw: Any) -> list[Any]:
    if isinstance(raw, Mapping) and "batch" in raw and "uuid" not in raw:
        return raw["batch"] if isinstance(raw["batch"], list) else []
    if isinstance(raw, Mapping):
        return [raw]
    return raw if isinstance(raw, list) else []


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """{"properties": {"$ai_product": [...]}} -> {"properties.$ai_product": [...]}; an object's own errors keep its name."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            name = prefix if key == api_settings.NON_FIELD_ERRORS_KEY and prefix else (
                f"{prefix}.{key}" if prefix else str(key)
            )
            for field, messages in _flatten(value, name).items():
                flat.setdefault(field, []).extend(messages)
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, (Mapping, list)):
                for field, messages in _flatten(item, prefix).items():
                    flat.setdefault(field, []).extend(messages)
            else:
                flat.setdefault(prefix or api_settings.NON_FIELD_ERRORS_KEY, []).append(str(item))
    else:
        flat.setdefault(prefix or api_settings.NON_FIELD_ERRORS_KEY, []).append(str(errors))
    return flat


def _leaves(errors: Any) -> list[str]:
    return [m for messages in _flatten(errors).values() for m in messages]


# --- Responses (schema) -----------------------------------------------------------------------------


class UsageEventsRecordedSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="Events in the request, a repeated uuid counted each time.")
    stored = serializers.IntegerField(help_text="Events recorded by this request.")
    duplicates = serializers.IntegerField(
        help_text="Events not recorded again: already recorded (same uuid), or repeated within the request."
    )
    billable = serializers.IntegerField(
        help_text="Distinct events of the request that count against AI credits (the product registry decides; "
        "0 means none of this usage will ever count)."
    )
    credits = serializers.IntegerField(
        help_text="AI credits the billable events carry (1 credit = $0.01 of cost, markup included), "
        "each event counted once however often it is sent."
    )


class UsageEventErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the batch (0 for a single event).")
    uuid = serializers.JSONField(allow_null=True, help_text="The uuid the event was sent with, if any.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name (properties as `properties.$ai_...`) -> what is wrong with it.",
    )


class UsageEventsRejectedSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was wrong, in a sentence; nothing was recorded.")
    code = serializers.CharField(help_text="`invalid_usage_events`, or `parse_error` for a body that is not JSON we accept.")
    errors = UsageEventErrorSerializer(many=True, required=False, help_text="One entry per invalid event.")
