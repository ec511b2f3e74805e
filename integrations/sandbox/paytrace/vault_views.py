"""The PayTrace sandbox's vault, hosted fields, sales by customer and recurring billing.

v1 calls (bearer token and `integrator_id`, as in `views`):

- `payment_fields/token/create` → a Protect.js `clientKey` (30 minutes);
- `customer/pt_protect_create` (160), `customer/pt_protect_update` (161),
  `customer/create` (keyed, 160), `customer/update` (161), `customer/delete` (162),
  `customer/export`;
- `transactions/sale/by_customer`;
- `recurrence/create`, `recurrence/update`, `recurrence/delete`, `recurrence/export`,
  `recurrence/export_approved`.

Sandbox-only: `_card_state` (make a profile's card decline or recover) and
`_run_recurrences` (make the payments due), with the same auth as `_settle`.

Errors: 30 unknown customer id, 171 customer id in use, 35/43/44 card fields, 51
amount, `INVALID_HPF_TOKEN` (the sandbox's own code, 900) for an hpf_token that is
unknown, used or expired, `RECURRENCE_NOT_FOUND` (the sandbox's own code, 901) for an
unknown schedule, 1 for a malformed request. No card number or CSC is stored, logged
or echoed: errors name the field, never its value.
"""

import json
import re
from datetime import date
from decimal import Decimal
from functools import wraps
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.cardnumbers import mask_card_numbers
from integrations.sandbox.logfilters import mark_expected_refusal
from integrations.sandbox.paytrace import recurrence as schedules
from integrations.sandbox.paytrace.cards import brand_of, is_luhn_valid
from integrations.sandbox.paytrace.models import (
    BILLING_ADDRESS_KEYS,
    ClientKey,
    Recurrence,
    Transaction,
    VaultCustomer,
)
from integrations.sandbox.paytrace.protect import TokenRefused, redeem_hosted_token
from integrations.sandbox.paytrace.vault import delete_profile, sell_by_customer
from integrations.sandbox.paytrace.views import (
    INVALID_AMOUNT,
    INVALID_CARD_NUMBER,
    INVALID_EXPIRATION_MONTH,
    INVALID_EXPIRATION_YEAR,
    REQUEST_ERROR,
    auth_error,
    error_reply,
    export_reply,
    read_address,
    read_amount,
    read_date,
    read_int,
    read_text,
    reply,
    transaction_reply,
    v1_endpoint,
    wants_events,
)
from integrations.sandbox.paytrace.views import (
    is_sandbox_user as is_sandbox_caller,
)

CUSTOMER_NOT_FOUND = "30"
CUSTOMER_ID_IN_USE = "171"
# The sandbox's own codes: PayTrace's codes for these are not documented.
INVALID_HPF_TOKEN = "900"
RECURRENCE_NOT_FOUND = "901"

# A vault id: letters, digits and `-_.@` (PayTrace's allowed set and length are
# unverified; the portal's ids fit).
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,49}$", re.ASCII)
MAX_TEXT = 255
# The largest amount the sandbox charges (a DecimalField(14, 2) holds more; a sale of
# a million is a typo in a test).
MAX_AMOUNT = Decimal("999999.99")
MAX_TOTAL_COUNT = 9999
MAX_YEARS_AHEAD = 20
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")


# Where a card number belongs in a body (`customer/create`); anywhere else it is refused.
CARD_NUMBER_PATHS = frozenset({"credit_card.number"})
MAX_DEPTH = 4


def card_number_fields(value: Any, path: str = "", depth: int = 0) -> list[str]:
    """The fields of a body that hold a card number where none belongs."""
    if path in CARD_NUMBER_PATHS:
        return []
    if isinstance(value, dict) and depth < MAX_DEPTH:
        return [
            name
            for key, item in value.items()
            for name in card_number_fields(
                item, f"{path}.{key}" if path else str(key), depth + 1
            )
        ]
    if isinstance(value, list) and depth < MAX_DEPTH:
        return [
            name for item in value for name in card_number_fields(item, path, depth + 1)
        ]
    is_scalar = isinstance(value, str | int | Decimal) and not isinstance(value, bool)
    if is_scalar and mask_card_numbers(str(value))[1]:
        return [path or "body"]
    return []


def refuse_card_numbers(body: dict[str, Any]) -> HttpResponse | None:
    """Refuse a body with a card number in a field that is not the card's: the sandbox
    would otherwise store it (an id, a description, an e-mail)."""
    fields = card_number_fields(body)
    if not fields:
        return None
    names = ", ".join(sorted(set(fields))[:5])
    return error_reply(
        {
            REQUEST_ERROR: [
                f"{names}: holds what looks like a card number. Card numbers go "
                "only through the hosted fields (or credit_card.number)."
            ]
        }
    )


def ok(response_code: int, message: str, **fields: Any) -> HttpResponse:
    return reply(
        {
            "success": True,
            "response_code": response_code,
            "status_message": message,
            **fields,
        }
    )


def read_customer_id(body: dict[str, Any]) -> str | HttpResponse:
    if refused := refuse_card_numbers(body):
        return refused
    value = body.get("customer_id")
    text = value.strip() if isinstance(value, str) else ""
    if not CUSTOMER_ID.match(text):
        return error_reply(
            {
                CUSTOMER_NOT_FOUND: [
                    "Please provide a valid customer_id (1 to 50 letters, digits or "
                    "-_.@, starting with a letter or digit)."
                ]
            }
        )
    return text


def unknown_customer(customer_id: str) -> HttpResponse:
    return error_reply(
        {CUSTOMER_NOT_FOUND: [f"Customer ID {customer_id} was not found."]}
    )


def customer_in_use(customer_id: str) -> HttpResponse:
    return error_reply(
        {CUSTOMER_ID_IN_USE: [f"Customer ID {customer_id} is already in use."]}
    )


def read_email(body: dict[str, Any]) -> str | None:
    """The e-mail, "" when absent, None when it is not one."""
    value = body.get("email")
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not EMAIL.match(value.strip()):
        return None
    return value.strip()


def read_expiry(
    month_value: Any, year_value: Any, errors: dict[str, list[str]]
) -> tuple[int, int] | None:
    """An expiry month and four-digit year, or None with the errors filled in."""
    today = timezone.localdate()
    month = read_int(month_value) if not isinstance(month_value, dict | list) else None
    if month is None or not 1 <= month <= 12:
        errors[INVALID_EXPIRATION_MONTH] = ["Please provide a valid Expiration Month."]
    year = read_int(year_value) if not isinstance(year_value, dict | list) else None
    if year is not None and 0 <= year <= 99:
        year += 2000
    if year is None or not 2000 <= year <= today.year + MAX_YEARS_AHEAD:
        errors[INVALID_EXPIRATION_YEAR] = ["Please provide a valid Expiration Year."]
    if month is None or year is None or errors:
        return None
    return month, year


def customer_reply(response_code: int, message: str, profile: VaultCustomer) -> Any:
    return ok(
        response_code,
        message,
        customer_id=profile.customer_id,
        masked_card_number="x" * 12 + profile.card_last4,
    )


# Hosted fields ---------------------------------------------------------------------


@v1_endpoint
def payment_fields_token(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Issue a Protect.js client key, good for 30 minutes."""
    key, _row = ClientKey.issue(request.api_user)  # type: ignore[attr-defined]
    return ok(1, "Your request has been successfully completed.", clientKey=key)


# Vault -------------------------------------------------------------------------------


@v1_endpoint
def customer_protect_create(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Create a profile from a hosted-fields token (160)."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    email = read_email(body)
    if email is None:
        return error_reply({REQUEST_ERROR: ["Please provide a valid email."]})
    try:
        with transaction.atomic():
            if VaultCustomer.objects.filter(customer_id=customer_id).exists():
                return customer_in_use(customer_id)
            token = redeem_hosted_token(body.get("hpf_token"), body.get("enc_key"))
            now = timezone.now()
            profile = VaultCustomer.objects.create(
                customer_id=customer_id,
                card_last4=token.card_last4,
                card_brand=token.card_brand,
                expiration_month=token.expiration_month,
                expiration_year=token.expiration_year,
                billing_address=read_address(
                    body.get("billing_address"), BILLING_ADDRESS_KEYS
                ),
                email=email,
                created_through="pt_protect",
                created_at=now,
                updated_at=now,
            )
    except TokenRefused as exc:
        return error_reply({INVALID_HPF_TOKEN: [str(exc)]})
    except IntegrityError:  # the same id created at the same moment
        return customer_in_use(customer_id)
    return customer_reply(
        160, "The customer profile was successfully created.", profile
    )


@v1_endpoint
def customer_protect_update(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Replace a profile's card from a hosted-fields token (161)."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    try:
        with transaction.atomic():
            profile = (
                VaultCustomer.objects.select_for_update()
                .filter(customer_id=customer_id)
                .first()
            )
            if profile is None:
                return unknown_customer(customer_id)
            token = redeem_hosted_token(body.get("hpf_token"), body.get("enc_key"))
            profile.card_last4 = token.card_last4
            profile.card_brand = token.card_brand
            profile.expiration_month = token.expiration_month
            profile.expiration_year = token.expiration_year
            # A new card answers as cards do: the old card's override goes with it.
            profile.decline_with = VaultCustomer.CardState.OK
            if isinstance(body.get("billing_address"), dict):
                profile.billing_address = read_address(
                    body["billing_address"], BILLING_ADDRESS_KEYS
                )
            profile.updated_at = timezone.now()
            profile.save()
    except TokenRefused as exc:
        return error_reply({INVALID_HPF_TOKEN: [str(exc)]})
    return customer_reply(
        161, "The customer profile was successfully updated.", profile
    )


@v1_endpoint
def customer_create(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Create a profile from a keyed card (160); only the last four digits are kept."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    errors: dict[str, list[str]] = {}
    card = body.get("credit_card")
    if not isinstance(card, dict):
        card = {}
    raw_number = card.get("number")
    number = (
        raw_number.replace(" ", "").replace("-", "")[:40]
        if isinstance(raw_number, str)
        else ""
    )
    if not (number.isascii() and is_luhn_valid(number)):
        errors[INVALID_CARD_NUMBER] = ["Please provide a valid Credit Card Number."]
    expiry = read_expiry(
        card.get("expiration_month"), card.get("expiration_year"), errors
    )
    email = read_email(body)
    if email is None:
        errors.setdefault(REQUEST_ERROR, []).append("Please provide a valid email.")
    if errors:
        return error_reply(errors)
    assert expiry is not None and email is not None
    now = timezone.now()
    try:
        with transaction.atomic():
            profile = VaultCustomer.objects.create(
                customer_id=customer_id,
                card_last4=number[-4:],
                card_brand=brand_of(number),
                expiration_month=expiry[0],
                expiration_year=expiry[1],
                billing_address=read_address(
                    body.get("billing_address"), BILLING_ADDRESS_KEYS
                ),
                email=email,
                created_through="keyed",
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:
        return customer_in_use(customer_id)
    return customer_reply(
        160, "The customer profile was successfully created.", profile
    )


@v1_endpoint
def customer_update(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Change a profile's address, e-mail or card expiry (161). A new card number goes
    through `pt_protect_update`; one sent here is refused, not stored."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    errors: dict[str, list[str]] = {}
    card = body.get("credit_card")
    if card is not None and not isinstance(card, dict):
        errors[REQUEST_ERROR] = ["credit_card must be an object."]
        card = {}
    card = card or {}
    if card.get("number") not in (None, ""):
        errors[INVALID_CARD_NUMBER] = [
            "The sandbox changes a card through customer/pt_protect_update, "
            "not a keyed number."
        ]
    expiry = None
    if "expiration_month" in card or "expiration_year" in card:
        expiry = read_expiry(
            card.get("expiration_month"), card.get("expiration_year"), errors
        )
    email = read_email(body)
    if email is None:
        errors.setdefault(REQUEST_ERROR, []).append("Please provide a valid email.")
    if body.get("billing_address") is not None and not isinstance(
        body["billing_address"], dict
    ):
        errors.setdefault(REQUEST_ERROR, []).append(
            "billing_address must be an object."
        )
    if errors:
        return error_reply(errors)
    with transaction.atomic():
        profile = (
            VaultCustomer.objects.select_for_update()
            .filter(customer_id=customer_id)
            .first()
        )
        if profile is None:
            return unknown_customer(customer_id)
        if expiry is not None:
            profile.expiration_month, profile.expiration_year = expiry
        if "email" in body:
            profile.email = email or ""
        if isinstance(body.get("billing_address"), dict):
            profile.billing_address = read_address(
                body["billing_address"], BILLING_ADDRESS_KEYS
            )
        profile.updated_at = timezone.now()
        profile.save()
    return customer_reply(
        161, "The customer profile was successfully updated.", profile
    )


@v1_endpoint
def customer_delete(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Remove a profile (162); its active schedules are cancelled."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    with transaction.atomic():
        profile = (
            VaultCustomer.objects.select_for_update()
            .filter(customer_id=customer_id)
            .first()
        )
        if profile is None:
            return unknown_customer(customer_id)
        delete_profile(profile)
    return ok(
        162, "The customer profile was successfully deleted.", customer_id=customer_id
    )


@v1_endpoint
def customer_export(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """All profiles, or one (`customer_id`; unknown → 30)."""
    found = VaultCustomer.objects.order_by("customer_id")
    if body.get("customer_id") not in (None, ""):
        customer_id = read_customer_id(body)
        if isinstance(customer_id, HttpResponse):
            return customer_id
        found = found.filter(customer_id=customer_id)
        if not found.exists():
            return unknown_customer(customer_id)
    return ok(
        1,
        "Your request has been successfully completed.",
        customers=[profile.as_record() for profile in found],
    )


# Sales by customer -----------------------------------------------------------------


@v1_endpoint
def sale_by_customer(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Charge a profile's card; decline by the rules in `vault`."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    amount = read_amount(body.get("amount"))
    if amount is None or amount > MAX_AMOUNT:
        return error_reply(
            {
                INVALID_AMOUNT: [
                    f"Please provide a valid Transaction Amount (0.01 to {MAX_AMOUNT})."
                ]
            }
        )
    not_text = [
        key
        for key in ("invoice_id", "description", "customer_reference_id")
        if body.get(key) is not None
        and (isinstance(body[key], bool) or not isinstance(body[key], str | int))
    ]
    if not_text:
        return error_reply({REQUEST_ERROR: [f"{', '.join(not_text)}: must be text."]})
    csc = body.get("csc")
    if csc not in (None, "") and not (
        isinstance(csc, str | int)
        and not isinstance(csc, bool)
        and str(csc).isascii()
        and str(csc).isdigit()
        and 3 <= len(str(csc)) <= 4
    ):
        return error_reply({"148": ["Please provide a valid CSC (3 or 4 digits)."]})
    profile = VaultCustomer.objects.filter(customer_id=customer_id).first()
    if profile is None:
        return unknown_customer(customer_id)
    txn = sell_by_customer(
        profile,
        amount,
        invoice_id=read_text(body, "invoice_id", 100),
        description=read_text(body, "description", MAX_TEXT),
        customer_reference_id=read_text(body, "customer_reference_id", 100),
        has_csc=csc not in (None, ""),
        created_by=request.api_user,  # type: ignore[attr-defined]
        from_ip=request.META.get("REMOTE_ADDR", ""),
        notify=wants_events(body),
    )
    approved = txn.response_code == 101
    if not approved:
        mark_expected_refusal(request)
    return reply(by_customer_reply(txn), status=200 if approved else 400)


def by_customer_reply(txn: Transaction) -> dict[str, Any]:
    """A sale's reply, without `masked_card_number` (by_customer replies lack it)."""
    answer = transaction_reply(txn)
    answer.pop("masked_card_number", None)
    answer["customer_id"] = txn.customer_id
    return answer


def sandbox_control(view: Any) -> Any:
    """A sandbox-only control (like `_settle`): the sandbox API user (bearer token or
    basic credentials) and a JSON object body, else PayTrace-style errors."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if not is_sandbox_caller(request):
            return auth_error(
                "invalid_token",
                "Send a bearer token or the sandbox API user's credentials.",
            )
        body = read_json(request)
        if body is None:
            return error_reply(
                {REQUEST_ERROR: ["The request body must be a JSON object."]}
            )
        return view(request, body)

    return wrapper


@sandbox_control
def card_state(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Sandbox only: make a profile's card answer `ok`, `insufficient_funds` (soft
    declines) or `lost_stolen` (hard declines). Body `{"customer_id", "state"}`."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    state = body.get("state")
    if state not in VaultCustomer.CardState.values:
        return error_reply(
            {
                REQUEST_ERROR: [
                    "Please provide a state: "
                    + ", ".join(VaultCustomer.CardState.values)
                    + "."
                ]
            }
        )
    updated = VaultCustomer.objects.filter(customer_id=customer_id).update(
        decline_with=state, updated_at=timezone.now()
    )
    if not updated:
        return unknown_customer(customer_id)
    return reply({"success": True, "customer_id": customer_id, "state": state})


def read_json(request: HttpRequest) -> dict[str, Any] | None:
    try:
        body = json.loads(request.body or b"{}", parse_float=Decimal)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# Recurring billing -------------------------------------------------------------------


def read_recurrence_fields(
    fields: dict[str, Any], *, partial: bool
) -> dict[str, Any] | HttpResponse:
    """The schedule's fields from a `recurrence` object (all required unless
    `partial`), or an error reply naming the bad ones."""
    errors: list[str] = []
    out: dict[str, Any] = {}
    if not partial or "amount" in fields:
        amount = read_amount(fields.get("amount"))
        if amount is None or amount > MAX_AMOUNT:
            return error_reply(
                {
                    INVALID_AMOUNT: [
                        f"Please provide a valid amount (0.01 to {MAX_AMOUNT})."
                    ]
                }
            )
        out["amount"] = amount
    if not partial or "start_date" in fields:
        start = (
            read_date(fields.get("start_date"))
            if isinstance(fields.get("start_date"), str)
            else None
        )
        if start is None or not date(2000, 1, 1) <= start <= date(2099, 12, 31):
            errors.append("Please provide a valid start_date (MM/DD/YYYY).")
        else:
            out["start_on"] = start
    if not partial or "frequency" in fields:
        frequency = fields.get("frequency")
        if frequency not in Recurrence.Frequency.values:
            errors.append(
                "Please provide a frequency: "
                + ", ".join(Recurrence.Frequency.values)
                + "."
            )
        else:
            out["frequency"] = frequency
    if not partial or "total_count" in fields:
        raw = fields.get("total_count", 0)
        count = None if isinstance(raw, bool | dict | list) else read_int(raw)
        if count is None or not 0 <= count <= MAX_TOTAL_COUNT:
            errors.append(
                f"Please provide a total_count from 0 (until cancelled) to "
                f"{MAX_TOTAL_COUNT}."
            )
        else:
            out["total_count"] = count
    for key, limit in (("description", MAX_TEXT), ("invoice_id", 100)):
        if key in fields:
            if fields[key] is not None and not isinstance(fields[key], str | int):
                errors.append(f"{key} must be text.")
            else:
                out[key] = read_text(fields, key, limit)
    if errors:
        return error_reply({REQUEST_ERROR: errors})
    return out


def recurrence_object(body: dict[str, Any]) -> dict[str, Any] | HttpResponse:
    fields = body.get("recurrence")
    if not isinstance(fields, dict):
        return error_reply({REQUEST_ERROR: ["recurrence must be an object."]})
    return fields


def find_recurrence(fields: dict[str, Any]) -> Recurrence | HttpResponse:
    raw = fields.get("id")
    pk = None if isinstance(raw, bool | dict | list) else read_int(raw)
    recurrence = (
        Recurrence.objects.select_for_update().filter(pk=pk).first()
        if pk is not None and 0 < pk < 2**62
        else None
    )
    if recurrence is None:
        return error_reply(
            {RECURRENCE_NOT_FOUND: ["Please provide the id of an existing recurrence."]}
        )
    return recurrence


def recurrence_reply(response_code: int, message: str, row: Recurrence) -> HttpResponse:
    return ok(response_code, message, recurrence=schedules.as_record(row))


@v1_endpoint
def recurrence_create(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Schedule payments on a profile; the reply's `recurrence.id` names it."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    fields = recurrence_object(body)
    if isinstance(fields, HttpResponse):
        return fields
    values = read_recurrence_fields(fields, partial=False)
    if isinstance(values, HttpResponse):
        return values
    if not VaultCustomer.objects.filter(customer_id=customer_id).exists():
        return unknown_customer(customer_id)
    now = timezone.now()
    row = Recurrence(customer_id=customer_id, created_at=now, updated_at=now, **values)
    schedules.reschedule(row)
    row.save()
    return recurrence_reply(1, "The recurring payment was successfully created.", row)


@v1_endpoint
def recurrence_update(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Change an active schedule's amount, dates, frequency, count or texts."""
    if refused := refuse_card_numbers(body):
        return refused
    fields = recurrence_object(body)
    if isinstance(fields, HttpResponse):
        return fields
    values = read_recurrence_fields(fields, partial=True)
    if isinstance(values, HttpResponse):
        return values
    with transaction.atomic():
        row = find_recurrence(fields)
        if isinstance(row, HttpResponse):
            return row
        if row.status != Recurrence.Status.ACTIVE:
            return error_reply(
                {REQUEST_ERROR: [f"The recurrence is {row.status}; it can't change."]}
            )
        if "start_on" in values and row.repeat_count:
            return error_reply(
                {
                    REQUEST_ERROR: [
                        "The recurrence has made payments; its start_date can't change."
                    ]
                }
            )
        for key, value in values.items():
            setattr(row, key, value)
        schedules.reschedule(row)
        row.updated_at = timezone.now()
        row.save()
    return recurrence_reply(1, "The recurring payment was successfully updated.", row)


@v1_endpoint
def recurrence_delete(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Cancel a schedule (kept on record as `cancelled`)."""
    if refused := refuse_card_numbers(body):
        return refused
    fields = recurrence_object(body)
    if isinstance(fields, HttpResponse):
        return fields
    with transaction.atomic():
        row = find_recurrence(fields)
        if isinstance(row, HttpResponse):
            return row
        row.status = Recurrence.Status.CANCELLED
        row.next_on = None
        row.updated_at = timezone.now()
        row.save(update_fields=["status", "next_on", "updated_at"])
    return recurrence_reply(1, "The recurring payment was successfully deleted.", row)


@v1_endpoint
def recurrence_export(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """All schedules, or one profile's (`customer_id`)."""
    found = Recurrence.objects.order_by("pk")
    if body.get("customer_id") not in (None, ""):
        customer_id = read_customer_id(body)
        if isinstance(customer_id, HttpResponse):
            return customer_id
        found = found.filter(customer_id=customer_id)
    return ok(
        1,
        "Your request has been successfully completed.",
        recurrences=[schedules.as_record(row) for row in found],
    )


@v1_endpoint
def recurrence_export_approved(
    request: HttpRequest, body: dict[str, Any]
) -> HttpResponse:
    """The approved sales one profile's schedules made (export records)."""
    customer_id = read_customer_id(body)
    if isinstance(customer_id, HttpResponse):
        return customer_id
    return export_reply(
        list(
            Transaction.objects.filter(
                customer_id=customer_id,
                recurrence__isnull=False,
                response_code=101,
            ).order_by("pk")
        )
    )


@sandbox_control
def run_recurrences(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Sandbox only: make every recurring payment due by `today` (default: the
    gateway's today). Body `{"today": "MM/DD/YYYY", "notify": false}`, both optional."""
    today = None
    if body.get("today") not in (None, ""):
        today = read_date(body["today"]) if isinstance(body["today"], str) else None
        if today is None:
            return error_reply({REQUEST_ERROR: ["Please provide today as MM/DD/YYYY."]})
    payments = schedules.run_due(today, notify=wants_events(body))
    return reply(
        {
            "success": True,
            "count": len(payments),
            "payments": [payment.as_dict() for payment in payments],
        }
    )
