"""The inbound contract: what a webhook or silent post must look like to be stored.

Everything the pipeline reads from a delivery is checked here, once, before the event
is written: the body's nesting and characters, every field `normalize_record` reads
(type, range, format, length), the ids, and the signing secrets themselves. A delivery
that passes cannot crash a worker; one that does not is refused with 400 and the field
named, never its value (values may be card data).
"""

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime as parse_iso_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from integrations.cardnumbers import mask_card_numbers
from integrations.connectors.paytrace import (
    MAX_AMOUNT,
    RESPONSE_CODE_MAX,
    TEXT_LIMITS,
    TRANSACTION_ID_MAX_DIGITS,
    YEARS,
    InvalidRecord,
    normalize_record,
    parse_datetime,
)

EVENT_TYPES = (
    "transaction.approved",
    "transaction.declined",
    "transaction.settled",
    "transaction.voided",
    "transaction.refunded",
)
# Deepest nesting of objects and arrays a body may have (a PayTrace event has 3).
MAX_DEPTH = 32
# The Event.event_id / InboundDelivery.webhook_id column.
WEBHOOK_ID_MAX_LENGTH = 200
# Standard Webhooks recommends 24-64 random bytes.
SECRET_MIN_BYTES = 24
SECRET_PREFIX = "whsec_"


class BodyError(ValueError):
    """A body that is not JSON the pipeline can store; `reason` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- the body -----------------------------------------------------------------------

_ESCAPE = re.compile(r"\\.", re.S)
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PARENS = str.maketrans("[{]}", "(())")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def exceeds_depth(raw: str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests objects and arrays deeper than `limit`.

    Works on the text without recursing (json.loads would), in linear passes: drop
    escapes, then strings, then everything but brackets, then peel one layer of
    innermost pairs per pass. What cannot be peeled is unbalanced; its open brackets
    still count, so `[[[[…` without an end is caught too.
    """
    if raw.count("[") + raw.count("{") <= limit:
        return False
    text = _STRING.sub("", _ESCAPE.sub("", raw))
    text = _NOT_BRACKET.sub("", text).translate(_PARENS)
    layers = 0
    while text and layers <= limit:
        peeled = text.replace("()", "")
        if peeled == text:
            break
        text, layers = peeled, layers + 1
    return layers + text.count("(") > limit


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class ExponentDecimal(Decimal):
    """A JSON number written with an exponent (`1e20`): no amount may be one."""

    __slots__ = ()


def _read_float(text: str) -> Decimal:
    return ExponentDecimal(text) if "e" in text or "E" in text else Decimal(text)


def load_json(raw: str) -> Any:
    """Parse a webhook body: numbers with a fraction as Decimal, no NaN or Infinity,
    at most MAX_DEPTH levels, no NUL or lone surrogate anywhere (no column holds one).

    Raises BodyError with reason `too_deep` or `invalid_json`.
    """
    if exceeds_depth(raw):
        raise BodyError("too_deep", f"The body nests deeper than {MAX_DEPTH} levels.")
    try:
        body = json.loads(raw, parse_float=_read_float, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BodyError("invalid_json", f"The body is not JSON: {exc}") from None
    # Only a \u escape can put NUL or a surrogate into a str decoded from UTF-8 text
    # (a raw NUL is not valid JSON), so most bodies skip the walk.
    if "\\u" in raw and _holds_unstorable(body):
        raise BodyError(
            "invalid_json",
            "The body holds a \\u0000 or a lone surrogate (\\ud800-\\udfff) escape.",
        )
    return body


def _holds_unstorable(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def looks_like_card_number(text: str) -> bool:
    return mask_card_numbers(text)[1]


# --- the fields -----------------------------------------------------------------------
#
# Each check takes a parsed JSON value and returns it cleaned, or raises FieldError
# with a message that names what is expected, never the value. `validate_event`
# applies them (plain functions: the webhook hot path cannot afford a DRF serializer
# per request); the serializers below wrap the same checks to describe the contract
# in the OpenAPI schema.


class FieldError(ValueError):
    """One field's value breaks the contract."""


class _NestedErrors(Exception):
    def __init__(self, errors: dict) -> None:
        super().__init__("nested errors")
        self.errors = errors


_MONEY_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MONEY_MESSAGE = (
    "must be an amount in plain decimal notation with ASCII digits, e.g. 125.50"
)


def check_money(data: Any) -> Decimal:
    """An amount that fits DecimalField(max_digits=14, decimal_places=2), from 0 up.

    A JSON number, or a string in plain decimal notation with ASCII digits: no
    exponent (`1e20`), no NaN or Infinity, no Arabic-Indic or full-width digits.
    """
    if isinstance(data, bool | ExponentDecimal):
        raise FieldError(_MONEY_MESSAGE)
    if isinstance(data, int):
        value = Decimal(data)
    elif isinstance(data, Decimal):
        value = data
    elif isinstance(data, str) and _MONEY_TEXT.fullmatch(data.strip()):
        value = Decimal(data.strip())
    else:
        raise FieldError(_MONEY_MESSAGE)
    exponent = value.as_tuple().exponent  # "n", "N" or "F" when not finite
    if not isinstance(exponent, int) or exponent > 0:
        raise FieldError(_MONEY_MESSAGE)
    if exponent < -2:
        raise FieldError("must have at most 2 decimal places")
    if not Decimal(0) <= value <= MAX_AMOUNT:
        raise FieldError(f"must be from 0.00 to {MAX_AMOUNT}")
    return value


def check_optional_money(data: Any) -> Decimal | None:
    return None if data == "" else check_money(data)


def check_paytrace_time(data: Any) -> str:
    """PayTrace's `M/D/YYYY h:mm:ss AM/PM` (no zone), or empty."""
    if isinstance(data, str) and not data.strip():
        return ""
    try:
        if not isinstance(data, str):
            raise ValueError
        parse_datetime(data, "UTC")
    except ValueError:
        raise FieldError(
            "must be PayTrace's M/D/YYYY h:mm:ss AM/PM, e.g. 3/4/2026 2:07:09 PM "
            f"(years {YEARS.start}-{YEARS.stop - 1})"
        ) from None
    return data


_TRANSACTION_ID = re.compile(rf"[0-9]{{1,{TRANSACTION_ID_MAX_DIGITS}}}")


def check_transaction_id(data: Any) -> str:
    """PayTrace's numeric transaction id: an integer, or a string of ASCII digits."""
    if isinstance(data, int) and not isinstance(data, bool) and data >= 0:
        data = str(data)
    if not isinstance(data, str) or not _TRANSACTION_ID.fullmatch(data):
        raise FieldError(
            "must be PayTrace's numeric transaction id "
            f"(1-{TRANSACTION_ID_MAX_DIGITS} ASCII digits)"
        )
    if looks_like_card_number(data):
        raise FieldError("looks like a card number; PayTrace transaction ids never do")
    return data


def check_optional_transaction_id(data: Any) -> str:
    """A refund's sale, when the relay names it; empty is fine."""
    return "" if data == "" else check_transaction_id(data)


def check_response_code(data: Any) -> int | None:
    """PayTrace's numeric response code; empty is fine."""
    if data == "":
        return None
    if isinstance(data, str) and re.fullmatch(r"[0-9]{1,6}", data.strip()):
        data = int(data.strip())
    if isinstance(data, bool) or not isinstance(data, int):
        raise FieldError(f"must be an integer from 0 to {RESPONSE_CODE_MAX}")
    if not 0 <= data <= RESPONSE_CODE_MAX:
        raise FieldError(f"must be an integer from 0 to {RESPONSE_CODE_MAX}")
    return data


def text_check(field: str) -> Callable[[Any], str]:
    """Text (a string, or an integer written as one) that fits the field's column."""
    limit = TEXT_LIMITS[field]

    def check(data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, str | int):
            raise FieldError("must be text")
        text = str(data).strip()
        if len(text) > limit:
            raise FieldError(f"must be at most {limit} characters")
        if _UNSTORABLE.search(text):
            raise FieldError("must not hold a NUL character or a lone surrogate")
        return text

    return check


def check_event_type(data: Any) -> str:
    if data not in EVENT_TYPES or not isinstance(data, str):
        raise FieldError(f"must be one of {', '.join(EVENT_TYPES)}")
    return data


def check_occurred_at(data: Any) -> datetime:
    """ISO 8601 with a UTC offset, e.g. 2026-03-04T14:07:09Z; returned in UTC."""
    message = "must be ISO 8601 with a UTC offset, e.g. 2026-03-04T14:07:09Z"
    if not isinstance(data, str) or not data.isascii():
        raise FieldError(message)
    try:
        value = parse_iso_datetime(data.strip())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise FieldError(message)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = None
    if value is None or value.year not in YEARS:
        raise FieldError(f"must be in the years {YEARS.start}-{YEARS.stop - 1}")
    return value


@dataclass(frozen=True)
class Rule:
    check: Callable[[Any], Any]
    required: bool = False
    nullable: bool = True


def nested(rules: dict[str, Rule]) -> Callable[[Any], dict]:
    def check(data: Any) -> dict:
        cleaned, errors = _apply(data, rules)
        if errors:
            raise _NestedErrors(errors)
        return cleaned

    return check


def _apply(data: Any, rules: dict[str, Rule]) -> tuple[dict, dict]:
    if not isinstance(data, dict):
        raise FieldError("must be a JSON object")
    cleaned: dict = {}
    errors: dict = {}
    for name, rule in rules.items():
        if name not in data:
            if rule.required:
                errors[name] = ["This field is required."]
            continue
        value = data[name]
        if value is None:
            if not rule.nullable:
                errors[name] = ["This field may not be null."]
            continue
        try:
            cleaned[name] = rule.check(value)
        except FieldError as exc:
            errors[name] = [str(exc)]
        except _NestedErrors as exc:
            errors[name] = exc.errors
    return cleaned, errors


RECORD_RULES = {
    "transaction_id": Rule(check_transaction_id, required=True, nullable=False),
    "transaction_type": Rule(text_check("transaction_type")),
    "amount": Rule(check_money, required=True, nullable=False),
    "tax_amount": Rule(check_optional_money),
    "invoice_id": Rule(text_check("invoice_id")),
    "customer_reference_id": Rule(text_check("customer_reference_id")),
    "customer_id": Rule(text_check("customer_id")),
    "description": Rule(text_check("description")),
    "credit_card": Rule(
        nested({"masked_number": Rule(text_check("credit_card.masked_number"))})
    ),
    "masked_card_number": Rule(text_check("masked_card_number")),
    "approval_code": Rule(text_check("approval_code")),
    "approval_message": Rule(text_check("approval_message")),
    "status_code": Rule(text_check("status_code")),
    "status_message": Rule(text_check("status_message")),
    "response_code": Rule(check_response_code),
    "created": Rule(
        nested(
            {
                "at": Rule(check_paytrace_time),
                "through": Rule(text_check("created.through")),
            }
        )
    ),
    "settled": Rule(check_paytrace_time),
    # Relayed refund events only (PayTrace's export does not show it): the sale.
    "original_transaction_id": Rule(check_optional_transaction_id),
}
EVENT_RULES = {
    "type": Rule(check_event_type, required=True, nullable=False),
    "occurred_at": Rule(check_occurred_at, required=True, nullable=False),
    "data": Rule(nested(RECORD_RULES), required=True, nullable=False),
}


def validate_event(body: Any, time_zone: str) -> tuple[dict, dict]:
    """Apply the contract to a parsed body: (cleaned values, errors by field).

    Errors nest like DRF's (`{"data": {"tax_amount": [...]}}`). A record whose fields
    all pass is also read by `normalize_record`, the worker's own reader, so what it
    would refuse is refused here, and nothing accepted can crash a worker.
    """
    try:
        cleaned, errors = _apply(body, EVENT_RULES)
    except FieldError as exc:
        return {}, {"non_field_errors": [str(exc)]}
    if not errors:
        try:
            normalize_record(body["data"], time_zone)
        except InvalidRecord as exc:
            errors = {"data": _nested(exc.field, exc.problem)}
    return cleaned, errors


def _nested(field: str, problem: str) -> dict:
    """`created.at` → {"created": {"at": [problem]}}, the shape DRF gives nested errors."""
    *parents, leaf = field.split(".")
    errors: dict = {leaf: [problem]}
    for parent in reversed(parents):
        errors = {parent: errors}
    return errors


def error_fields(errors: Any, prefix: str = "") -> list[str]:
    """The dotted names of the refused fields: {"data": {"tax_amount": …}} →
    ["data.tax_amount"]."""
    if not isinstance(errors, dict):
        return [prefix or "non_field_errors"]
    names = []
    for key, value in errors.items():
        names.extend(error_fields(value, f"{prefix}.{key}" if prefix else str(key)))
    return names


# --- the contract in the OpenAPI schema ------------------------------------------------


class _CheckedField(serializers.Field):
    """A schema field that validates with one of the checks above."""

    def __init__(self, check: Callable[[Any], Any], **kwargs: Any) -> None:
        self.check = check
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        try:
            return self.check(data)
        except FieldError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: Any) -> Any:
        return value


def _text(field: str, **kwargs: Any) -> serializers.CharField:
    return serializers.CharField(
        max_length=TEXT_LIMITS[field],
        required=False,
        allow_blank=True,
        allow_null=True,
        **kwargs,
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT, "multipleOf": 0.01},
            {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,2})?$"},
        ]
    }
)
class MoneyField(_CheckedField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(check_money, **kwargs)


@extend_schema_field(
    {
        "type": "string",
        "example": "3/4/2026 2:07:09 PM",
        "format": "M/D/YYYY h:mm:ss AM/PM",
    }
)
class PayTraceTimeField(_CheckedField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(check_paytrace_time, **kwargs)


@extend_schema_field({"type": "string", "pattern": r"^[0-9]{1,20}$"})
class TransactionIdField(_CheckedField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(check_transaction_id, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": RESPONSE_CODE_MAX})
class ResponseCodeField(_CheckedField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(check_response_code, **kwargs)


class CreditCardSerializer(serializers.Serializer):
    masked_number = _text(
        "credit_card.masked_number", help_text="Asterisks and the last four digits."
    )


class CreatedSerializer(serializers.Serializer):
    at = PayTraceTimeField(required=False, allow_null=True)
    through = _text("created.through", help_text="Channel, e.g. API.")


class RecordSerializer(serializers.Serializer):
    """Every field of a PayTrace export record the pipeline reads."""

    transaction_id = TransactionIdField()
    transaction_type = _text("transaction_type")
    amount = MoneyField(help_text="A JSON number or a string; at most 2 places.")
    tax_amount = MoneyField(required=False, allow_null=True)
    invoice_id = _text("invoice_id")
    customer_reference_id = _text("customer_reference_id")
    customer_id = _text("customer_id")
    description = _text("description")
    credit_card = CreditCardSerializer(required=False, allow_null=True)
    masked_card_number = _text("masked_card_number")
    approval_code = _text("approval_code")
    approval_message = _text("approval_message")
    status_code = _text("status_code")
    status_message = _text("status_message")
    response_code = ResponseCodeField(required=False, allow_null=True)
    created = CreatedSerializer(required=False, allow_null=True)
    settled = PayTraceTimeField(required=False, allow_null=True)
    original_transaction_id = TransactionIdField(
        required=False,
        allow_null=True,
        help_text="Refunds relayed by the sandbox: the sale they refund (optional; "
        "the export does not carry it).",
    )


class EventSerializer(serializers.Serializer):
    """The webhook body, for the OpenAPI schema; `validate_event` enforces it."""

    type = serializers.ChoiceField(choices=EVENT_TYPES)
    occurred_at = serializers.DateTimeField(
        help_text="ISO 8601 with a UTC offset, e.g. 2026-03-04T14:07:09Z."
    )
    data = RecordSerializer()


# --- the ids ----------------------------------------------------------------------------

_LETTER = re.compile("[A-Za-z]")
_WEBHOOK_ID = re.compile(rf"[\x21-\x7e]{{1,{WEBHOOK_ID_MAX_LENGTH}}}")


def webhook_id_problem(webhook_id: str) -> str | None:
    """Why a `webhook-id` cannot be an event's id, or None.

    A longer id is refused rather than cut (two ids sharing their first 200
    characters would collide). An id that is nothing but a card number is refused;
    one that merely holds a run of digits shaped like one (random hex ids do, now
    and then) is kept, that run masked with letters keyed on it.
    """
    if len(webhook_id) > WEBHOOK_ID_MAX_LENGTH:
        return (
            f"The webhook-id header is longer than {WEBHOOK_ID_MAX_LENGTH} characters."
        )
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        return "The webhook-id header must be visible ASCII characters, no spaces."
    if not _LETTER.search(webhook_id) and looks_like_card_number(webhook_id):
        return "The webhook-id header is a card number; send another id."
    return None


_SILENT_POST_ID = re.compile(rf"[0-9]{{1,{TRANSACTION_ID_MAX_DIGITS}}}")


def silent_post_id_problem(transaction_id: str) -> str | None:
    """Why a silent post's TRANSACTIONID cannot be looked up, or None.

    ASCII digits only: `"²³".isdigit()` is True, and `int()` reads full-width digits.
    """
    if not _SILENT_POST_ID.fullmatch(transaction_id):
        return f"parmList needs a TRANSACTIONID of 1-{TRANSACTION_ID_MAX_DIGITS} ASCII digits."
    if looks_like_card_number(transaction_id):
        return "The TRANSACTIONID looks like a card number; PayTrace ids never do."
    return None


# --- the secrets -------------------------------------------------------------------------


def secret_problem(secret: str) -> str | None:
    """Why a Standard Webhooks secret cannot be saved, or None when it is fine."""
    if not secret.startswith(SECRET_PREFIX):
        return f"A webhook secret starts with {SECRET_PREFIX} followed by base64."
    encoded = secret.removeprefix(SECRET_PREFIX)
    if not encoded:
        return f"Nothing follows {SECRET_PREFIX}: paste the whole secret."
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"The part after {SECRET_PREFIX} is not valid base64."
    if len(key) < SECRET_MIN_BYTES:
        return (
            f"The secret is {len(key)} bytes once decoded; use at least "
            f"{SECRET_MIN_BYTES} random bytes."
        )
    return None


def webhook_for(secret: str) -> Webhook | None:
    """A verifier for a stored secret, or None when the secret cannot be decoded
    (saved before secrets were checked): skip it rather than fail the request."""
    try:
        return Webhook(secret)
    except (ValueError, TypeError, EmptyWebhookSecretError):
        return None
