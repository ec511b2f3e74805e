"""PayTrace JSON API v1: the connector and the helpers that read its records.

Written against PayTrace's JSON API v1 documentation (the OAuth token, the reply
envelope, the paths, the error codes, the export record and the legacy silent post).
Every call is a POST; every body carries `integrator_id`. Replies are read by
`success` first and `response_code` second. A `success: false` reply raises a
permanent ConnectorError whose `code` is the first PayTrace error code and whose
`detail` is the whole `errors` object; a decline is an answer rather than an error,
so `sale_keyed` returns it.

The helpers at the bottom are pure (no database, no HTTP) so the mapping code and its
tests can use them on stored records.
"""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import requests
from django.core.cache import cache
from django.utils import timezone

from integrations.connectors.base import (
    DEFAULT_TIMEOUT,
    ConnectorError,
    HttpConnector,
    decode_json,
)

# Renew a cached token when less than this much of its lifetime is left.
TOKEN_RENEW_MARGIN_SECONDS = 300
# Responses that decline a sale: they come back `success: false` with no `errors`.
DECLINE_CODES = frozenset({102, 103})
TRANSACTION_NOT_FOUND = "811"
# A refund of a sale that has not settled yet (void it, or wait for settlement).
REFUND_NOT_SETTLED = "817"
CENT = Decimal("0.01")


class PayTraceConnector(HttpConnector):
    """A PayTrace merchant account, reached through the v1 JSON API."""

    system = "PayTrace"

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        integrator_id: str,
        time_zone: str = "America/Los_Angeles",
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, timeout=timeout)
        self.username = username
        self._password = password
        self.integrator_id = integrator_id
        self.time_zone = time_zone
        digest = hashlib.sha256(f"{self.base_url}\0{username}".encode()).hexdigest()
        self.token_cache_key = f"paytrace:token:{digest}"

    def __repr__(self) -> str:
        return f"<PayTraceConnector {self.base_url} as {self.username}>"

    # Token ---------------------------------------------------------------------

    def access_token(self, *, renew: bool = False) -> str:
        """Return a cached bearer token, fetching a new one when it is near expiry."""
        now = timezone.now().timestamp()
        cached = None if renew else cache.get(self.token_cache_key)
        if cached and cached["expires_at"] - now > TOKEN_RENEW_MARGIN_SECONDS:
            return cached["access_token"]
        reply = self.call(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "password",
                "username": self.username,
                "password": self._password,
            },
        )
        if not isinstance(reply, dict) or not reply.get("access_token"):
            raise ConnectorError(
                "PayTrace answered the token request without a token", transient=False
            )
        expires_in = int(reply.get("expires_in") or 0)
        cache.set(
            self.token_cache_key,
            {"access_token": reply["access_token"], "expires_at": now + expires_in},
            timeout=expires_in,
        )
        return reply["access_token"]

    # v1 calls --------------------------------------------------------------------

    def post_v1(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST a v1 body and return the reply; retry once on `invalid_token`."""
        body = {**payload, "integrator_id": self.integrator_id}
        path = f"/v1/{path.lstrip('/')}"
        for renew in (False, True):
            token = self.access_token(renew=renew)
            response = self.request(
                "POST", path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
            reply = self._decode(response)
            if not (isinstance(reply, dict) and reply.get("error") == "invalid_token"):
                break
            cache.delete(self.token_cache_key)
        if response.status_code >= 500 or not isinstance(reply, dict):
            raise self.error_from_response("POST", path, response)
        if "success" not in reply:
            raise self.error_from_response("POST", path, response)
        if reply["success"] is True:
            return reply
        errors = reply.get("errors") or {}
        if not errors and reply.get("response_code") in DECLINE_CODES:
            return reply
        code = str(next(iter(errors), "") if isinstance(errors, dict) else "")
        message = f"PayTrace refused POST {path}"
        if first := _first_message(errors):
            message = f"{message}: {first}"
        raise ConnectorError(
            message,
            transient=False,
            code=code,
            status=response.status_code,
            detail=errors or reply,
        )

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        try:
            return decode_json(response)
        except ValueError:
            return None

    def export_by_id(self, transaction_id: int | str) -> dict[str, Any] | None:
        """Return one transaction's export record, or None if PayTrace has no such id."""
        try:
            reply = self.post_v1(
                "transactions/export/by_id", {"transaction_id": int(transaction_id)}
            )
        except ConnectorError as exc:
            if exc.code == TRANSACTION_NOT_FOUND:
                return None
            raise
        records = [_read_record(record) for record in reply.get("transactions") or []]
        return records[0] if records else None

    def export_by_date_range(
        self, start: date, end: date, **filters: Any
    ) -> list[dict[str, Any]]:
        """Return the records created from `start` to `end` (gateway-local, inclusive).

        `filters` go into the body as given: `transaction_type`, `transaction_id`,
        `customer_id`, `including_text`, `include_bin`.
        """
        payload = {
            "start_date": start.strftime("%m/%d/%Y"),
            "end_date": end.strftime("%m/%d/%Y"),
            **filters,
        }
        reply = self.post_v1("transactions/export/by_date_range", payload)
        return [_read_record(record) for record in reply.get("transactions") or []]

    def export_batches(self, start: date, end: date) -> list[dict[str, Any]]:
        """Return settlement batch summaries for batches settled from `start` to `end`."""
        payload = {
            "start_date": start.strftime("%m/%d/%Y"),
            "end_date": end.strftime("%m/%d/%Y"),
        }
        reply = self.post_v1("batches/export", payload)
        return list(reply.get("batches") or [])

    def batch_transactions(self, batch_number: int | str) -> list[dict[str, Any]]:
        """Return the settled transactions of one batch (export records)."""
        reply = self.post_v1(
            "batches/transaction_list", {"batch_number": int(batch_number)}
        )
        return [_read_record(record) for record in reply.get("transactions") or []]

    def sale_keyed(
        self,
        *,
        amount: Decimal,
        card_number: str,
        expiration_month: int | str,
        expiration_year: int | str,
        csc: str,
        invoice_id: str = "",
        customer_id: str = "",
        description: str = "",
        notify: bool = True,
    ) -> dict[str, Any]:
        """Charge a keyed card. Returns the reply; check `success` (declines return).

        `notify=False` is understood only by the sandbox (no event for this sale), so
        it is sent only when set.
        """
        payload: dict[str, Any] = {
            "amount": parse_amount(amount).quantize(CENT, rounding=ROUND_HALF_UP),
            "credit_card": {
                "number": card_number,
                "expiration_month": expiration_month,
                "expiration_year": expiration_year,
            },
            "csc": csc,
        }
        for key, value in (
            ("invoice_id", invoice_id),
            ("customer_id", customer_id),
            ("description", description),
        ):
            if value:
                payload[key] = value
        if not notify:
            payload["notify"] = False
        return self.post_v1("transactions/sale/keyed", payload)

    def void(self, transaction_id: int | str) -> dict[str, Any]:
        """Void an unsettled transaction (a settled one fails with code 818)."""
        return self.post_v1(
            "transactions/void", {"transaction_id": int(transaction_id)}
        )

    def refund(
        self, transaction_id: int | str, amount: Decimal | None = None
    ) -> dict[str, Any]:
        """Refund a settled transaction, in full or by `amount` (unsettled: code 817,
        `REFUND_NOT_SETTLED`; PayTrace keeps no idempotency key, so a caller records
        the refund before calling, to never ask twice)."""
        payload: dict[str, Any] = {"transaction_id": int(transaction_id)}
        if amount is not None:
            payload["amount"] = parse_amount(amount).quantize(
                CENT, rounding=ROUND_HALF_UP
            )
        return self.post_v1("transactions/refund/for_transaction", payload)

    # The customer vault, hosted fields and recurring billing (issue 15) -------------
    # Card data never passes through these: a vault profile is made from a Protect.js
    # `hpf_token`/`enc_key` pair, and charged by its `customer_id`. Error codes: 30
    # unknown customer id, 171 id in use; the sandbox answers 900 for an hpf_token that
    # is unknown, used or expired and 901 for an unknown schedule (PayTrace's own codes
    # for those are unverified: docs/paytrace-sandbox.md).

    def payment_fields_client_key(self) -> str:
        """A Protect.js `clientKey` for one enrolment page (v1
        `payment_fields/token/create`)."""
        reply = self.post_v1("payment_fields/token/create", {})
        key = reply.get("clientKey") or (reply.get("data") or {}).get("clientKey")
        if not isinstance(key, str) or not key:
            raise ConnectorError(
                "PayTrace answered payment_fields/token/create without a clientKey",
                transient=False,
                detail=reply,
            )
        return key

    def create_customer_protect(
        self,
        *,
        customer_id: str,
        hpf_token: str,
        enc_key: str,
        billing_address: Mapping[str, Any] | None = None,
        email: str = "",
    ) -> dict[str, Any]:
        """Make a vault profile from a Protect.js token (`customer/pt_protect_create`).
        A `customer_id` in use fails with code 171."""
        payload: dict[str, Any] = {
            "customer_id": customer_id,
            "hpf_token": hpf_token,
            "enc_key": enc_key,
            "billing_address": dict(billing_address or {}),
        }
        if email:
            payload["email"] = email
        return self.post_v1("customer/pt_protect_create", payload)

    def update_customer_protect(
        self,
        *,
        customer_id: str,
        hpf_token: str,
        enc_key: str,
        billing_address: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replace a vault profile's card from a Protect.js token."""
        payload: dict[str, Any] = {
            "customer_id": customer_id,
            "hpf_token": hpf_token,
            "enc_key": enc_key,
        }
        if billing_address:
            payload["billing_address"] = dict(billing_address)
        return self.post_v1("customer/pt_protect_update", payload)

    def update_customer(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        """Change a vault profile's address, e-mail or expiry (`customer/update`)."""
        return self.post_v1("customer/update", {"customer_id": customer_id, **fields})

    def delete_customer(self, customer_id: str) -> dict[str, Any]:
        """Remove a vault profile (an unknown id fails with code 30)."""
        return self.post_v1("customer/delete", {"customer_id": customer_id})

    def export_customers(self, customer_id: str = "") -> list[dict[str, Any]]:
        """Vault profiles (one, or all): `customer_id`, `credit_card{masked_number,
        expiration_month, expiration_year}`, `billing_address`, `email`."""
        payload = {"customer_id": customer_id} if customer_id else {}
        reply = self.post_v1("customer/export", payload)
        return list(reply.get("customers") or [])

    def sale_by_customer(
        self,
        *,
        customer_id: str,
        amount: Decimal,
        invoice_id: str = "",
        description: str = "",
        customer_reference_id: str = "",
    ) -> dict[str, Any]:
        """Charge a vault profile. Returns the reply; check `success` (declines
        return, with `response_code` 102/103 and the issuer's `approval_message`)."""
        payload: dict[str, Any] = {
            "customer_id": customer_id,
            "amount": parse_amount(amount).quantize(CENT, rounding=ROUND_HALF_UP),
        }
        for key, value in (
            ("invoice_id", invoice_id),
            ("description", description),
            ("customer_reference_id", customer_reference_id),
        ):
            if value:
                payload[key] = value
        return self.post_v1("transactions/sale/by_customer", payload)

    def find_by_reference(
        self, reference: str, start: date, end: date, *, customer_id: str = ""
    ) -> list[dict[str, Any]]:
        """The transactions whose references contain `reference` (the export's
        `including_text`), created from `start` to `end`: how a charge whose answer
        was lost is found before anything is charged again."""
        filters: dict[str, Any] = {"including_text": reference}
        if customer_id:
            filters["customer_id"] = customer_id
        return [
            record
            for record in self.export_by_date_range(start, end, **filters)
            if reference
            in " ".join(
                str(record.get(key) or "")
                for key in ("description", "invoice_id", "customer_reference_id")
            )
        ]

    def create_recurrence(
        self, *, customer_id: str, recurrence: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Schedule charges on a vault profile (`recurrence/create`); the reply's
        `recurrence.id` names the schedule."""
        return self.post_v1(
            "recurrence/create",
            {"customer_id": customer_id, "recurrence": dict(recurrence)},
        )

    def update_recurrence(
        self, recurrence_id: str, recurrence: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self.post_v1(
            "recurrence/update",
            {"recurrence": {"id": recurrence_id, **dict(recurrence)}},
        )

    def delete_recurrence(self, recurrence_id: str) -> dict[str, Any]:
        return self.post_v1("recurrence/delete", {"recurrence": {"id": recurrence_id}})

    def export_recurrences(self, customer_id: str = "") -> list[dict[str, Any]]:
        """Schedules (of one vault profile, or all), each with `id`, `customer_id`,
        `amount` (Decimal), `frequency`, `start_date`, `next_date`, `total_count`,
        `repeat_count`, `status`, `description` and `invoice_id`."""
        payload = {"customer_id": customer_id} if customer_id else {}
        reply = self.post_v1("recurrence/export", payload)
        return [_read_record(record) for record in reply.get("recurrences") or []]

    def export_recurrence_approved(self, customer_id: str) -> list[dict[str, Any]]:
        """The approved charges schedules made for one vault profile."""
        reply = self.post_v1("recurrence/export_approved", {"customer_id": customer_id})
        return [_read_record(record) for record in reply.get("transactions") or []]


def _first_message(errors: Any) -> str:
    if isinstance(errors, dict):
        for messages in errors.values():
            if isinstance(messages, list) and messages:
                return str(messages[0])
            if messages:
                return str(messages)
    return ""


def _read_record(record: dict[str, Any]) -> dict[str, Any]:
    """Read the record's `amount` as Decimal (an integral amount arrives as int).

    An amount that is not one is left as it came: `normalize_record` refuses that one
    record with InvalidRecord, rather than this call failing the whole export.
    """
    if not isinstance(record, dict):
        return record
    if "amount" in record and record["amount"] not in (None, ""):
        try:
            return {**record, "amount": parse_amount(record["amount"])}
        except ValueError:
            return record
    return record


# Pure helpers --------------------------------------------------------------------

# ASCII only: `\d` and `\s` would also take Arabic-Indic digits or ideographic spaces.
_DATETIME = re.compile(
    r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})\s*([AaPp][Mm])\s*",
    re.ASCII,
)
# The years a PayTrace time may name; outside them it is a typo or an attack, and
# date arithmetic near year 1 or 9999 would overflow.
YEARS = range(1970, 3000)
# An amount written in plain ASCII decimal notation (no exponent, no NaN or Infinity).
_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
# The largest amount a DecimalField(max_digits=14, decimal_places=2) holds.
MAX_AMOUNT = Decimal("999999999999.99")
# Characters no text column can hold (PostgreSQL refuses NUL; a lone surrogate cannot
# be encoded). A str from json.loads holds a surrogate only when it was a lone one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Longest value of each text field the pipeline reads, after trimming: the width of
# the PaymentTransaction column it fills (a test keeps the two equal), or a bound for
# the ones only shown or matched on.
TEXT_LIMITS = {
    "transaction_type": 20,
    "invoice_id": 60,
    "customer_reference_id": 60,
    "customer_id": 60,
    "description": 1000,
    "credit_card.masked_number": 40,
    "masked_card_number": 40,
    "approval_code": 20,
    "approval_message": 200,
    "status_code": 40,
    "status_message": 200,
    "created.through": 40,
}
TRANSACTION_ID_MAX_DIGITS = 20
RESPONSE_CODE_MAX = 999999


class InvalidRecord(ValueError):
    """A PayTrace record the pipeline cannot read; no retry will change it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


_BATCH = re.compile(r"^GB([0-9]+)", re.IGNORECASE)
BATCH_NUMBER_MAX_DIGITS = 20
# Brand from the leading digits of a masked number that shows them (`include_bin`).
_BRANDS = (
    ("34", "American Express"),
    ("37", "American Express"),
    ("4", "Visa"),
    ("5", "MasterCard"),
    ("2", "MasterCard"),
    ("6", "Discover"),
)


# A second reader of the same format lives in `mappings.fields.parse_paytrace_datetime`
# (the `paytrace_datetime` field-mapping transform). They stay two on purpose:
# connectors never import from mappings and mappings never import from integrations,
# and this one is the strict edge parser (ASCII digits, years 1970-2999, errors that
# name the field) while the transform reads values already accepted here.
def parse_datetime(text: str | None, time_zone: str) -> datetime | None:
    """Read PayTrace's `M/D/YYYY h:mm:ss AM/PM` in `time_zone`; return it in UTC.

    An empty value gives None. A wall time that occurs twice (the hour repeated when
    daylight saving time ends) is read with `fold=0`, the first occurrence, which is
    the daylight-time one; a wall time skipped when DST starts is read with the
    offset in force before the change, as zoneinfo does for `fold=0`.
    """
    if text is None or not str(text).strip():
        return None
    match = _DATETIME.fullmatch(str(text))
    if not match:
        raise ValueError(
            f"not a PayTrace date and time (M/D/YYYY h:mm:ss AM/PM): {text!r}"
        )
    month, day, year, hour, minute, second = (int(part) for part in match.groups()[:6])
    if not 1 <= hour <= 12:
        raise ValueError(f"hour out of range in PayTrace time {text!r}")
    if year not in YEARS:
        raise ValueError(
            f"year out of range ({YEARS.start}-{YEARS.stop - 1}) in PayTrace time {text!r}"
        )
    hour = hour % 12 + (12 if match.group(7).upper() == "PM" else 0)
    try:
        local = datetime(
            year, month, day, hour, minute, second, tzinfo=ZoneInfo(time_zone), fold=0
        )
    except ValueError as exc:
        raise ValueError(f"invalid PayTrace date and time {text!r}: {exc}") from exc
    return local.astimezone(UTC)


def parse_amount(value: Any) -> Decimal:
    """Read an amount (int, Decimal or string) as Decimal, never through float.

    A float that slipped in is converted through its shortest repr (`250.5` →
    `Decimal("250.5")`), not its binary value. A string must be plain ASCII decimal
    notation: no exponent, no NaN or Infinity, no Arabic-Indic or full-width digits
    (which `Decimal()` would quietly read).
    """
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str) and not _AMOUNT.fullmatch(value.strip()):
        raise ValueError(f"not an amount: {value!r}")
    elif isinstance(value, (float, str)):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError(f"not an amount: {value!r}") from exc
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


@dataclass(frozen=True)
class PaymentRecord:
    """A PayTrace transaction record in the portal's terms (UTC times, Decimal money)."""

    transaction_id: str
    transaction_type: str
    amount: Decimal
    tax_amount: Decimal | None
    currency: str
    invoice_id: str
    customer_reference_id: str
    customer_id: str
    description: str
    card_last4: str
    card_brand: str
    approval_code: str
    approval_message: str
    status_code: str
    status_message: str
    response_code: int | None
    channel: str
    created_at: datetime | None
    settled_at: datetime | None
    batch_number: str

    def is_settled(self) -> bool:
        return bool(self.batch_number) or "settled" in self.status_message.lower()


def _text(record: Mapping[str, Any], field: str) -> str:
    """Read a text field (dot path) as trimmed text that fits its column."""
    value: Any = record
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal | float):
        raise InvalidRecord(field, "must be text")
    text = str(value).strip()
    if _UNSTORABLE.search(text):
        raise InvalidRecord(field, "holds a NUL character or a lone surrogate")
    limit = TEXT_LIMITS.get(field)
    if limit is not None and len(text) > limit:
        raise InvalidRecord(field, f"longer than {limit} characters")
    return text


def _object(record: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = record.get(field)
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRecord(field, "must be an object")
    return value


def _money(record: Mapping[str, Any], field: str) -> Decimal | None:
    """Read an amount, rounded to cents (ROUND_HALF_UP); None when empty."""
    value = record.get(field)
    if value in (None, ""):
        return None
    try:
        amount = parse_amount(value)
    except ValueError:
        raise InvalidRecord(field, "not an amount in decimal notation") from None
    if abs(amount) > MAX_AMOUNT:
        raise InvalidRecord(field, f"larger than {MAX_AMOUNT}")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _time(value: Any, field: str, time_zone: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRecord(field, "must be text (M/D/YYYY h:mm:ss AM/PM)")
    try:
        return parse_datetime(value, time_zone)
    except ValueError:
        raise InvalidRecord(
            field,
            "not a PayTrace date and time (M/D/YYYY h:mm:ss AM/PM, "
            f"years {YEARS.start}-{YEARS.stop - 1})",
        ) from None


def _transaction_id(record: Mapping[str, Any]) -> str:
    value = record.get("transaction_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= TRANSACTION_ID_MAX_DIGITS
    ):
        raise InvalidRecord(
            "transaction_id",
            f"must be PayTrace's numeric id (1-{TRANSACTION_ID_MAX_DIGITS} digits)",
        )
    return value


def _response_code(record: Mapping[str, Any]) -> int | None:
    value = record.get("response_code")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= RESPONSE_CODE_MAX
    ):
        return value
    raise InvalidRecord("response_code", f"must be an integer 0-{RESPONSE_CODE_MAX}")


def _card_brand(masked: str) -> str:
    if not masked[:1].isdigit():
        return ""
    for prefix, brand in _BRANDS:
        if masked.startswith(prefix):
            return brand
    return ""


def normalize_record(record: Mapping[str, Any], time_zone: str) -> PaymentRecord:
    """Turn a record of PayTrace's transaction export into a PaymentRecord.

    Amounts are rounded to cents (ROUND_HALF_UP); times go from the gateway's zone to
    UTC; missing optional fields become "" or None. Anything malformed raises
    InvalidRecord naming the field (never its value, which may be card data).
    """
    if not isinstance(record, Mapping):
        raise InvalidRecord("record", "must be an object")
    card = _object(record, "credit_card")
    created = _object(record, "created")
    masked = _text(record, "credit_card.masked_number") if card else ""
    masked = masked or _text(record, "masked_card_number")
    last4 = masked[-4:] if masked[-4:].isascii() and masked[-4:].isdigit() else ""
    status_code = _text(record, "status_code")
    batch = _BATCH.match(status_code)
    if batch and len(batch.group(1)) > BATCH_NUMBER_MAX_DIGITS:
        raise InvalidRecord("status_code", "batch number longer than 20 digits")
    transaction_type = _text(record, "transaction_type").upper()
    if len(transaction_type) > TEXT_LIMITS["transaction_type"]:  # "ß".upper() == "SS"
        raise InvalidRecord("transaction_type", "longer than 20 characters")
    return PaymentRecord(
        transaction_id=_transaction_id(record),
        transaction_type=transaction_type,
        amount=_money(record, "amount") or Decimal("0.00"),
        tax_amount=_money(record, "tax_amount"),
        currency="USD",
        invoice_id=_text(record, "invoice_id"),
        customer_reference_id=_text(record, "customer_reference_id"),
        customer_id=_text(record, "customer_id"),
        description=_text(record, "description"),
        card_last4=last4,
        card_brand=_card_brand(masked),
        approval_code=_text(record, "approval_code"),
        approval_message=_text(record, "approval_message"),
        status_code=status_code,
        status_message=_text(record, "status_message"),
        response_code=_response_code(record),
        channel=_text(record, "created.through"),
        created_at=_time(created.get("at"), "created.at", time_zone),
        settled_at=_time(record.get("settled"), "settled", time_zone),
        batch_number=batch.group(1) if batch else "",
    )


def parse_silent_post(parm_list: str) -> dict[str, str]:
    """Split a legacy silent post's `parmList` (`NAME~value|NAME~value|`).

    Pairs end with a pipe (a missing last one is fine); a value may be empty or hold
    further `~` characters, since only the first one separates name from value.
    """
    fields: dict[str, str] = {}
    for pair in (parm_list or "").split("|"):
        if not pair.strip():
            continue
        name, _, value = pair.partition("~")
        if name.strip():
            fields[name.strip()] = value
    return fields
